// Package password hashes and checks passwords with argon2id and bounds the
// work: hashing runs on a fixed number of workers behind a queue that admits
// a caller only while its expected wait (the callers ahead and half the hash
// in progress, × the measured time of one hash ÷ workers) is within a
// budget, so a burst of logins waits its turn and a flood is turned away at
// once with ErrBusy (saying how long the queue would take) instead of
// exhausting memory or starving the CPU that token verification needs.
//
// Hashes are PHC strings ($argon2id$v=19$m=...,t=...,p=...$salt$hash); the
// parameters are read back from each stored hash, so they can be raised later
// and old hashes upgraded on the next login (NeedsRehash). The package is not
// a password policy (length rules, breach lists) and keeps no users.
package password

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/argon2"
)

var (
	// ErrTooLong: the password is over MaxLength bytes. It is refused, never
	// truncated, and costs no hashing.
	ErrTooLong = errors.New("password: too long")
	// ErrBusy: every worker is taken and the caller's expected wait is over
	// the budget (or the queue is at its cap), or the caller's context ended
	// while it queued. The server answers RESOURCE_EXHAUSTED. A refusal is a
	// *BusyError, which says how long the queue is expected to take.
	ErrBusy = errors.New("password: hasher busy")
	// ErrMalformed: a stored hash is not an argon2id PHC string this package
	// accepts (including parameters beyond its limits).
	ErrMalformed = errors.New("password: malformed hash")
)

// MaxLength is the longest password accepted, in bytes.
const MaxLength = 1024

// recentHashes is how many hash times the admission's estimate is the
// median of.
const recentHashes = 16

// DefaultWaitBudget is the longest expected wait in the queue a hash is
// admitted with by default: a burst of logins an interactive user does not
// notice, long enough for a few dozen logins at once per worker.
const DefaultWaitBudget = time.Second

// BusyError is a refusal: every worker taken and the caller's expected wait,
// Wait, over the budget (or the queue at its cap). Wait is also when to
// retry: by then the queue ahead of the caller has been worked off.
type BusyError struct {
	Wait time.Duration
}

func (e *BusyError) Error() string {
	return "password: hasher busy: expected wait " + e.Wait.Round(time.Millisecond).String()
}
func (e *BusyError) Unwrap() error             { return ErrBusy }
func (e *BusyError) RetryAfter() time.Duration { return e.Wait }

// Params are argon2id's cost parameters and sizes.
type Params struct {
	// Memory in KiB.
	Memory  uint32
	Time    uint32
	Threads uint8
	SaltLen uint32
	KeyLen  uint32
}

// DefaultParams are OWASP's minimum for argon2id: 19 MiB, 2 passes, 1 lane,
// a 16-byte salt and a 32-byte key.
var DefaultParams = Params{Memory: 19 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}

// Limits on parameters, for new hashes and for stored ones alike: a stored
// hash decides how much memory Check allocates, so a corrupted one must not
// be able to ask for gigabytes.
const (
	maxMemory  = 256 * 1024 // KiB
	maxTime    = 64
	maxThreads = 16
	minSalt    = 8
	maxSalt    = 64
	minKey     = 16
	maxKey     = 64
	maxPHC     = 256
)

func (p Params) validate() error {
	switch {
	case p.Time < 1 || p.Time > maxTime:
		return fmt.Errorf("time %d not in 1..%d", p.Time, maxTime)
	case p.Threads < 1 || p.Threads > maxThreads:
		return fmt.Errorf("threads %d not in 1..%d", p.Threads, maxThreads)
	case p.Memory < 8*uint32(p.Threads) || p.Memory > maxMemory:
		return fmt.Errorf("memory %d KiB not in %d..%d", p.Memory, 8*uint32(p.Threads), maxMemory)
	case p.SaltLen < minSalt || p.SaltLen > maxSalt:
		return fmt.Errorf("salt length %d not in %d..%d", p.SaltLen, minSalt, maxSalt)
	case p.KeyLen < minKey || p.KeyLen > maxKey:
		return fmt.Errorf("key length %d not in %d..%d", p.KeyLen, minKey, maxKey)
	}
	return nil
}

// Hasher hashes and checks passwords on a bounded pool. Safe for
// concurrent use.
type Hasher struct {
	params  Params
	workers int
	queue   int
	budget  time.Duration
	rand    io.Reader
	now     func() time.Time

	// slots holds one token per busy worker. Work runs on the caller's
	// goroutine once it holds a slot: no hand-off between goroutines, so
	// the pool costs next to nothing over a bare argon2 call.
	slots   chan struct{}
	waiting atomic.Int64
	// hashNS is the measured time of one hash, in nanoseconds: the median
	// of argon2id's own time (without the queue) over the last hashes in
	// recent, so one hash stalled by a GC or a busy neighbour does not
	// turn a burst away. 0 until a hash has been measured.
	hashNS   atomic.Int64
	recentMu sync.Mutex
	recent   [recentHashes]time.Duration
	nRecent  int

	// dummy is checked when the user is unknown, so that path costs one
	// real argon2id run with the current parameters.
	dummy phc

	// idKey is argon2.IDKey; tests swap it to count or hold calls.
	idKey func(password, salt []byte, time, memory uint32, threads uint8, keyLen uint32) []byte
}

// Option configures a Hasher.
type Option func(*Hasher)

// WithParams sets the parameters of new hashes (and of the unknown-user
// dummy). Stored hashes are checked with their own.
func WithParams(p Params) Option { return func(h *Hasher) { h.params = p } }

// WithWorkers sets how many hashes run at once (default GOMAXPROCS). Peak
// memory is about workers × Params.Memory.
func WithWorkers(n int) Option { return func(h *Hasher) { h.workers = n } }

// WithQueue caps how many callers may wait for a worker, whatever the wait
// budget allows (default 256 per worker, far more than a second of hashing
// with the default parameters: the budget decides); beyond it, ErrBusy at
// once. 0 means no waiting.
func WithQueue(n int) Option { return func(h *Hasher) { h.queue = n } }

// WithWaitBudget sets the longest expected wait a caller is queued with
// (default DefaultWaitBudget): with every worker busy, a caller with n
// callers queued ahead expects to wait (n + ½) × the measured hash time ÷
// workers (ExpectedWait); past the budget it gets a *BusyError at once. 0
// means no waiting.
func WithWaitBudget(d time.Duration) Option { return func(h *Hasher) { h.budget = d } }

// WithClock replaces time.Now for measuring how long a hash takes, for
// tests.
func WithClock(now func() time.Time) Option { return func(h *Hasher) { h.now = now } }

// WithRandom replaces crypto/rand.Reader for salts, for tests.
func WithRandom(r io.Reader) Option { return func(h *Hasher) { h.rand = r } }

// New returns a Hasher. It computes the unknown-user dummy hash, so it takes
// about as long as one Hash.
func New(opts ...Option) (*Hasher, error) {
	h := &Hasher{params: DefaultParams, workers: runtime.GOMAXPROCS(0), queue: -1, budget: DefaultWaitBudget,
		rand: rand.Reader, now: time.Now, idKey: argon2.IDKey}
	for _, o := range opts {
		o(h)
	}
	if h.queue == -1 {
		h.queue = 256 * h.workers
	}
	if err := h.params.validate(); err != nil {
		return nil, fmt.Errorf("password: %w", err)
	}
	if h.workers < 1 || h.queue < 0 || h.budget < 0 || h.rand == nil || h.now == nil {
		return nil, fmt.Errorf("password: need at least one worker, a non-negative queue and wait budget, a random source and a clock")
	}
	h.slots = make(chan struct{}, h.workers)
	pw := make([]byte, 16)
	if _, err := io.ReadFull(h.rand, pw); err != nil {
		return nil, fmt.Errorf("password: dummy: %w", err)
	}
	// The dummy is not measured for admission: it is the process's first
	// argon2id run, slowed by faulting in its memory.
	d, err := h.hash(pw, h.idKey)
	if err != nil {
		return nil, err
	}
	h.dummy = d
	return h, nil
}

// Hash returns the PHC string of pw with fresh salt.
func (h *Hasher) Hash(ctx context.Context, pw string) (string, error) {
	if len(pw) > MaxLength {
		return "", ErrTooLong
	}
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	defer h.release()
	p, err := h.hash([]byte(pw), h.timedIDKey)
	if err != nil {
		return "", err
	}
	return p.String(), nil
}

// Check reports whether pw matches the stored hash. For an unknown user pass
// stored == "": pw is then checked against a dummy hash, so the answer
// (false) takes as long as a wrong password for a real user.
func (h *Hasher) Check(ctx context.Context, stored, pw string) (bool, error) {
	if len(pw) > MaxLength {
		return false, ErrTooLong
	}
	known := stored != ""
	p := h.dummy
	if known {
		var err error
		if p, err = parsePHC(stored); err != nil {
			return false, err
		}
	}
	if err := h.acquire(ctx); err != nil {
		return false, err
	}
	defer h.release()
	got := h.timedIDKey([]byte(pw), p.salt, p.params.Time, p.params.Memory, p.params.Threads, uint32(len(p.key)))
	match := subtle.ConstantTimeCompare(got, p.key) == 1
	return known && match, nil
}

// NeedsRehash reports whether stored was made with other parameters than
// the Hasher's (or is not a valid hash): after a successful Check, store a
// fresh Hash of the password.
func (h *Hasher) NeedsRehash(stored string) bool {
	p, err := parsePHC(stored)
	return err != nil || p.params != h.params
}

// Admit reports whether a hash asked for now would be admitted: nil when a
// worker is free or the wait in the queue is expected within the budget,
// else the *BusyError Hash and Check would return. A caller with costly work
// to do before it hashes (a login reads its user from the store) can then
// answer a flood at once; Hash and Check still decide for themselves.
func (h *Hasher) Admit() error {
	if len(h.slots) < cap(h.slots) {
		return nil
	}
	return h.admit(h.waiting.Load())
}

// WaitBudget is the longest expected wait a caller is queued with
// (WithWaitBudget).
func (h *Hasher) WaitBudget() time.Duration { return h.budget }

// HashTime is the measured time of one hash: the median of the last 16
// (0 before the first; the queue cap alone bounds admission until then).
func (h *Hasher) HashTime() time.Duration { return time.Duration(h.hashNS.Load()) }

// Queued is how many callers are waiting for a hashing worker now.
func (h *Hasher) Queued() int64 { return h.waiting.Load() }

// ExpectedWait is how long a caller with ahead callers queued before it
// expects to wait for a worker while every worker is busy: the hashes
// ahead of it and, on average, half of one in progress, shared by the
// workers: (ahead + ½) × HashTime ÷ workers.
func (h *Hasher) ExpectedWait(ahead int64) time.Duration {
	return time.Duration(2*ahead+1) * h.HashTime() / time.Duration(2*h.workers)
}

// admit decides for a caller with ahead callers queued before it.
func (h *Hasher) admit(ahead int64) error {
	if wait := h.ExpectedWait(ahead); ahead >= int64(h.queue) || wait > h.budget || h.budget == 0 {
		return &BusyError{Wait: wait}
	}
	return nil
}

func (h *Hasher) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("password: %w", err) // the caller left: do no work
	}
	select {
	case h.slots <- struct{}{}:
		return nil
	default:
	}
	if err := h.admit(h.waiting.Add(1) - 1); err != nil {
		h.waiting.Add(-1)
		return err
	}
	defer h.waiting.Add(-1)
	select {
	case h.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrBusy, context.Cause(ctx))
	}
}

func (h *Hasher) release() { <-h.slots }

// timedIDKey is idKey, measured into hashNS.
func (h *Hasher) timedIDKey(pw, salt []byte, passes, memory uint32, threads uint8, keyLen uint32) []byte {
	start := h.now()
	key := h.idKey(pw, salt, passes, memory, threads, keyLen)
	h.observe(h.now().Sub(start))
	return key
}

// observe adds one hash's time to the recent ones and updates the median
// (the lower middle one of an even count).
func (h *Hasher) observe(d time.Duration) {
	if d <= 0 {
		return
	}
	h.recentMu.Lock()
	defer h.recentMu.Unlock()
	h.recent[h.nRecent%recentHashes] = d
	h.nRecent++
	var sorted [recentHashes]time.Duration
	n := copy(sorted[:], h.recent[:min(h.nRecent, recentHashes)])
	slices.Sort(sorted[:n])
	h.hashNS.Store(int64(sorted[(n-1)/2]))
}

// hash runs argon2id (idKey) over pw with a fresh salt; the caller holds a
// slot (or is New).
func (h *Hasher) hash(pw []byte, idKey func(pw, salt []byte, passes, memory uint32, threads uint8, keyLen uint32) []byte) (phc, error) {
	salt := make([]byte, h.params.SaltLen)
	if _, err := io.ReadFull(h.rand, salt); err != nil {
		return phc{}, fmt.Errorf("password: salt: %w", err)
	}
	key := idKey(pw, salt, h.params.Time, h.params.Memory, h.params.Threads, h.params.KeyLen)
	return phc{params: h.params, salt: salt, key: key}, nil
}

// phc is a parsed argon2id PHC string.
type phc struct {
	params Params
	salt   []byte
	key    []byte
}

var b64 = base64.RawStdEncoding.Strict()

func (p phc) String() string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.params.Memory, p.params.Time, p.params.Threads,
		b64.EncodeToString(p.salt), b64.EncodeToString(p.key))
}

// parsePHC accepts exactly what String produces (canonical numbers, m, t, p
// in that order, unpadded standard base64), within the parameter limits.
func parsePHC(s string) (phc, error) {
	// encoding/base64 skips \r and \n even in strict mode; refusing them
	// keeps one spelling per hash.
	if len(s) > maxPHC || strings.ContainsAny(s, "\r\n") {
		return phc{}, ErrMalformed
	}
	f := strings.Split(s, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" || f[2] != "v="+strconv.Itoa(argon2.Version) {
		return phc{}, ErrMalformed
	}
	ps := strings.Split(f[3], ",")
	if len(ps) != 3 {
		return phc{}, ErrMalformed
	}
	m, okM := param(ps[0], "m=", 32)
	t, okT := param(ps[1], "t=", 32)
	th, okP := param(ps[2], "p=", 8)
	if !okM || !okT || !okP {
		return phc{}, ErrMalformed
	}
	salt, errS := b64.DecodeString(f[4])
	key, errK := b64.DecodeString(f[5])
	if errS != nil || errK != nil {
		return phc{}, ErrMalformed
	}
	p := phc{
		params: Params{Memory: uint32(m), Time: uint32(t), Threads: uint8(th), SaltLen: uint32(len(salt)), KeyLen: uint32(len(key))},
		salt:   salt,
		key:    key,
	}
	if err := p.params.validate(); err != nil {
		return phc{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return p, nil
}

// param parses "<prefix><canonical decimal>" that fits in bits.
func param(s, prefix string, bits int) (uint64, bool) {
	v, ok := strings.CutPrefix(s, prefix)
	if !ok || v == "" || (len(v) > 1 && v[0] == '0') {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 10, bits)
	return n, err == nil && strconv.FormatUint(n, 10) == v
}
