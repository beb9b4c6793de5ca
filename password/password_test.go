package password

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
)

// tiny keeps tests fast; the code paths are the same as with real costs.
var tiny = Params{Memory: 8, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func newTiny(t testing.TB, opts ...Option) *Hasher {
	t.Helper()
	h, err := New(append([]Option{WithParams(tiny)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHashAndCheck(t *testing.T) {
	t.Parallel()
	h := newTiny(t)
	ctx := t.Context()
	long := strings.Repeat("x", MaxLength)
	for _, pw := range []string{"correct horse battery staple", "", "ünïcødé 🔑", long} {
		stored, err := h.Hash(ctx, pw)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := h.Check(ctx, stored, pw); err != nil || !ok {
			t.Errorf("Check(right password of %d bytes) = %v, %v", len(pw), ok, err)
		}
		wrong := "?"
		if pw != "" {
			wrong += pw[1:]
		}
		if ok, err := h.Check(ctx, stored, wrong); err != nil || ok {
			t.Errorf("Check(wrong password) = %v, %v", ok, err)
		}
	}
	// No truncation: passwords equal in their first 1023 bytes differ.
	stored, err := h.Hash(ctx, long)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := h.Check(ctx, stored, long[:MaxLength-1]+"y"); ok {
		t.Error("a password differing only in its last byte matched")
	}
}

func TestPHCFormat(t *testing.T) {
	t.Parallel()
	h, err := New(WithWorkers(1)) // real defaults: the format must show them
	if err != nil {
		t.Fatal(err)
	}
	stored, err := h.Hash(t.Context(), "pw")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Split(stored, "$")
	if len(f) != 6 || f[1] != "argon2id" || f[2] != "v=19" || f[3] != "m=19456,t=2,p=1" {
		t.Fatalf("hash %q is not $argon2id$v=19$m=19456,t=2,p=1$salt$hash", stored)
	}
	if len(f[4]) != 22 || len(f[5]) != 43 { // 16 and 32 bytes, unpadded base64
		t.Errorf("salt %q or hash %q has the wrong length", f[4], f[5])
	}
	if h.NeedsRehash(stored) {
		t.Error("a fresh default hash needs rehashing")
	}
	if !newTiny(t).NeedsRehash(stored) {
		t.Error("a hash with other parameters does not need rehashing")
	}
	// Parameters come from the stored hash: a tiny Hasher still checks it.
	if ok, err := newTiny(t).Check(t.Context(), stored, "pw"); err != nil || !ok {
		t.Errorf("Check with parameters from the hash = %v, %v", ok, err)
	}
}

// A known vector: argon2.IDKey itself, wrapped by hand, must check.
func TestCheckAcceptsExternallyMadeHash(t *testing.T) {
	t.Parallel()
	salt := []byte("0123456789abcdef")
	key := argon2.IDKey([]byte("hunter2"), salt, 3, 64, 2, 24)
	stored := phc{params: Params{Memory: 64, Time: 3, Threads: 2, SaltLen: 16, KeyLen: 24}, salt: salt, key: key}.String()
	if stored != "$argon2id$v=19$m=64,t=3,p=2$MDEyMzQ1Njc4OWFiY2RlZg$"+b64.EncodeToString(key) {
		t.Fatalf("encoded %q", stored)
	}
	h := newTiny(t)
	if ok, err := h.Check(t.Context(), stored, "hunter2"); err != nil || !ok {
		t.Errorf("Check = %v, %v", ok, err)
	}
	if !h.NeedsRehash(stored) {
		t.Error("NeedsRehash = false for other parameters")
	}
}

func TestMalformedHashIsAnError(t *testing.T) {
	t.Parallel()
	h := newTiny(t)
	good, err := h.Hash(t.Context(), "pw")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Split(good, "$")
	join := func(edit func([]string)) string {
		g := append([]string(nil), f...)
		edit(g)
		return strings.Join(g, "$")
	}
	for name, stored := range map[string]string{
		"argon2i":             join(func(g []string) { g[1] = "argon2i" }),
		"bcrypt":              "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy",
		"version 16":          join(func(g []string) { g[2] = "v=16" }),
		"params out of order": join(func(g []string) { g[3] = "t=1,m=8,p=1" }),
		"leading zero":        join(func(g []string) { g[3] = "m=08,t=1,p=1" }),
		"4 GiB memory":        join(func(g []string) { g[3] = "m=4194304,t=1,p=1" }),
		"memory overflow":     join(func(g []string) { g[3] = "m=99999999999,t=1,p=1" }),
		"zero time":           join(func(g []string) { g[3] = "m=8,t=0,p=1" }),
		"300 threads":         join(func(g []string) { g[3] = "m=8,t=1,p=300" }),
		"padded salt":         join(func(g []string) { g[4] += "==" }),
		"short salt":          join(func(g []string) { g[4] = "AAAA" }),
		"short hash":          join(func(g []string) { g[5] = "AAAA" }),
		"url base64":          join(func(g []string) { g[5] = strings.Repeat("_", 43) }),
		"newline in hash":     join(func(g []string) { g[5] = g[5][:20] + "\n" + g[5][20:] }),
		"extra field":         good + "$x",
		"missing field":       join(func(g []string) { g[5] = "" })[:len(good)-44],
		"garbage":             "garbage",
		"huge":                strings.Repeat("$", 10000),
	} {
		ok, err := h.Check(t.Context(), stored, "pw")
		if !errors.Is(err, ErrMalformed) || ok {
			t.Errorf("%s: Check = %v, %v, want false, ErrMalformed", name, ok, err)
		}
		if !h.NeedsRehash(stored) {
			t.Errorf("%s: NeedsRehash = false", name)
		}
	}
}

func TestTooLong(t *testing.T) {
	t.Parallel()
	h := newTiny(t)
	var calls atomic.Int32
	h.idKey = func(pw, salt []byte, ti, m uint32, th uint8, k uint32) []byte {
		calls.Add(1)
		return argon2.IDKey(pw, salt, ti, m, th, k)
	}
	pw := strings.Repeat("a", MaxLength+1)
	if _, err := h.Hash(t.Context(), pw); !errors.Is(err, ErrTooLong) {
		t.Errorf("Hash = %v, want ErrTooLong", err)
	}
	if ok, err := h.Check(t.Context(), "", pw); !errors.Is(err, ErrTooLong) || ok {
		t.Errorf("Check = %v, %v, want ErrTooLong", ok, err)
	}
	if calls.Load() != 0 {
		t.Errorf("refusing a long password ran argon2 %d times", calls.Load())
	}
}

// An unknown user costs one argon2id run with the Hasher's parameters, the
// same as a wrong password: counted, not timed.
func TestUnknownUserCostsARealHash(t *testing.T) {
	t.Parallel()
	h := newTiny(t)
	stored, err := h.Hash(t.Context(), "right")
	if err != nil {
		t.Fatal(err)
	}
	type call struct {
		time, memory uint32
		threads      uint8
		keyLen       uint32
	}
	var mu sync.Mutex
	var calls []call
	h.idKey = func(pw, salt []byte, ti, m uint32, th uint8, k uint32) []byte {
		mu.Lock()
		calls = append(calls, call{ti, m, th, k})
		mu.Unlock()
		return argon2.IDKey(pw, salt, ti, m, th, k)
	}
	if ok, err := h.Check(t.Context(), "", "right"); err != nil || ok {
		t.Fatalf("unknown user: Check = %v, %v, want false, nil", ok, err)
	}
	if ok, err := h.Check(t.Context(), stored, "wrong"); err != nil || ok {
		t.Fatalf("wrong password: Check = %v, %v, want false, nil", ok, err)
	}
	want := call{tiny.Time, tiny.Memory, tiny.Threads, tiny.KeyLen}
	if len(calls) != 2 || calls[0] != want || calls[1] != want {
		t.Errorf("argon2 calls %+v, want two with %+v", calls, want)
	}
}

// blockingHasher's argon2 waits on release, so tests control when workers
// free up.
func blockingHasher(t *testing.T, workers, queue int) (h *Hasher, started <-chan struct{}, release chan struct{}) {
	t.Helper()
	h = newTiny(t, WithWorkers(workers), WithQueue(queue))
	st := make(chan struct{}, 16)
	release = make(chan struct{})
	h.idKey = func(pw, salt []byte, ti, m uint32, th uint8, k uint32) []byte {
		st <- struct{}{}
		<-release
		return argon2.IDKey(pw, salt, ti, m, th, k)
	}
	return h, st, release
}

func TestBusyWhenSaturated(t *testing.T) {
	t.Parallel()
	h, started, release := blockingHasher(t, 1, 1)
	ctx := t.Context()

	var wg sync.WaitGroup
	wg.Go(func() { // takes the only worker
		if _, err := h.Hash(ctx, "a"); err != nil {
			t.Error(err)
		}
	})
	<-started
	if err := h.Admit(); err != nil {
		t.Errorf("Admit with the queue empty = %v", err)
	}

	queuedCtx, cancel := context.WithCancel(ctx)
	queued := make(chan error, 1)
	go func() { // takes the only queue place
		_, err := h.Check(queuedCtx, "", "b")
		queued <- err
	}()
	waitFor(t, func() bool { return h.waiting.Load() == 1 })

	// Worker busy and queue full: turned away at once.
	if err := h.Admit(); !errors.Is(err, ErrBusy) {
		t.Errorf("Admit with every worker taken and the queue full = %v, want ErrBusy", err)
	}
	if _, err := h.Hash(ctx, "c"); !errors.Is(err, ErrBusy) {
		t.Errorf("Hash with a full queue = %v, want ErrBusy", err)
	}
	if _, err := h.Check(ctx, "", "c"); !errors.Is(err, ErrBusy) {
		t.Errorf("Check with a full queue = %v, want ErrBusy", err)
	}

	// The queued caller gives up: ErrBusy, carrying why.
	cancel()
	if err := <-queued; !errors.Is(err, ErrBusy) || !errors.Is(err, context.Canceled) {
		t.Errorf("queued Check after cancel = %v, want ErrBusy and context.Canceled", err)
	}

	// Once the worker frees up, work proceeds again.
	close(release)
	wg.Wait()
	if err := h.Admit(); err != nil {
		t.Errorf("Admit after the pool drained = %v", err)
	}
	if _, err := h.Hash(ctx, "d"); err != nil {
		t.Errorf("Hash after the pool drained = %v", err)
	}
}

func TestQueuedCallerRunsWhenAWorkerFrees(t *testing.T) {
	t.Parallel()
	h, started, release := blockingHasher(t, 1, 4)
	ctx := t.Context()
	results := make(chan error, 3)
	for range 3 {
		go func() { _, err := h.Hash(ctx, "pw"); results <- err }()
	}
	<-started
	waitFor(t, func() bool { return h.waiting.Load() == 2 })
	if n := len(h.slots); n != 1 {
		t.Fatalf("%d workers busy, want 1", n)
	}
	close(release)
	for range 3 {
		if err := <-results; err != nil {
			t.Errorf("queued Hash = %v", err)
		}
	}
}

func TestNoWorkForAGoneCaller(t *testing.T) {
	t.Parallel()
	h := newTiny(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := h.Hash(ctx, "pw"); !errors.Is(err, context.Canceled) {
		t.Errorf("Hash with a cancelled context = %v", err)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	t.Parallel()
	for name, opts := range map[string][]Option{
		"no workers":     {WithWorkers(0)},
		"negative queue": {WithQueue(-2)},
		"negative wait":  {WithWaitBudget(-time.Second)},
		"no clock":       {WithClock(nil)},
		"1 KiB memory":   {WithParams(Params{Memory: 1, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})},
		"short salt":     {WithParams(Params{Memory: 8, Time: 1, Threads: 1, SaltLen: 4, KeyLen: 32})},
		"short key":      {WithParams(Params{Memory: 8, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 8})},
		"no randomness":  {WithParams(tiny), WithRandom(strings.NewReader(""))},
	} {
		if _, err := New(opts...); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func FuzzParsePHC(f *testing.F) {
	f.Add("$argon2id$v=19$m=19456,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("$argon2id$v=19$m=8,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA")
	f.Add("$argon2i$v=19$m=8,t=1,p=1$$")
	f.Add("$$$$$")
	f.Add("$argon2id$v=19$m=10,t=1,p=1$00000000000$0000000000000000000000\r0")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parsePHC(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("parse error %v is not ErrMalformed", err)
			}
			return
		}
		// One spelling per hash: what parses re-encodes to itself.
		if again := p.String(); again != s {
			t.Fatalf("parsed %q, re-encodes as %q", s, again)
		}
	})
}

// fakeClock is a clock that moves only when told.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// timedHasher's argon2id "takes" hashTime on the fake clock, then waits
// on hold (if not nil), so a test decides how long a hash takes and when
// workers free up; no wall-clock time is involved.
func timedHasher(t *testing.T, hashTime *atomic.Int64, hold chan struct{}, opts ...Option) (*Hasher, <-chan struct{}) {
	t.Helper()
	clk := &fakeClock{}
	h := newTiny(t, append([]Option{WithClock(clk.now)}, opts...)...)
	started := make(chan struct{}, 256)
	h.idKey = func(pw, salt []byte, ti, m uint32, th uint8, k uint32) []byte {
		started <- struct{}{}
		clk.advance(time.Duration(hashTime.Load()))
		if hold != nil {
			<-hold
		}
		return argon2.IDKey(pw, salt, ti, m, th, k)
	}
	return h, started
}

// TestHashTimeIsMeasured: the admission's hash time is the median of the
// recent hashes' own time on the Hasher's clock: one slow hash does not
// move it, a lasting change does.
func TestHashTimeIsMeasured(t *testing.T) {
	t.Parallel()
	var hashTime atomic.Int64
	hashTime.Store(int64(24 * time.Millisecond))
	h, _ := timedHasher(t, &hashTime, nil, WithWorkers(1))
	if got := h.HashTime(); got != 0 {
		t.Errorf("HashTime before any hash = %v, want 0 (New's dummy hash is not measured)", got)
	}
	ctx := t.Context()
	hashes := func(n int, d time.Duration) {
		t.Helper()
		hashTime.Store(int64(d))
		for range n {
			if _, err := h.Check(ctx, "", "pw"); err != nil {
				t.Fatal(err)
			}
		}
	}
	hashes(3, 24*time.Millisecond)
	if got := h.HashTime(); got != 24*time.Millisecond {
		t.Errorf("HashTime after hashes of 24ms = %v", got)
	}
	hashes(1, 400*time.Millisecond)
	if got := h.HashTime(); got != 24*time.Millisecond {
		t.Errorf("HashTime after one hash of 400ms = %v, want 24ms still", got)
	}
	hashes(3, 40*time.Millisecond)
	if got := h.HashTime(); got != 40*time.Millisecond {
		t.Errorf("HashTime after 3 more of 40ms = %v, want 40ms", got)
	}
	hashes(recentHashes, 30*time.Millisecond)
	if got := h.HashTime(); got != 30*time.Millisecond {
		t.Errorf("HashTime after %d of 30ms = %v, want 30ms (only the recent ones count)", recentHashes, got)
	}
	if got, want := h.ExpectedWait(10), 315*time.Millisecond; got != want { // 10.5 hashes
		t.Errorf("ExpectedWait(10 ahead) on 1 worker = %v, want %v", got, want)
	}
}

// TestAdmissionByExpectedWait: with every worker busy, callers queue while
// their expected wait ((callers ahead + ½) × hash time ÷ workers) is
// within the budget, and the next is refused at once with that wait: for
// 25 ms hashes and a 1 s budget, 40 queue per worker, and a burst of 32
// logins on one worker is served whole.
func TestAdmissionByExpectedWait(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		workers, wantQueued int
	}{
		{1, 40},
		{2, 80},
	} {
		t.Run(strconv.Itoa(tc.workers)+" workers", func(t *testing.T) {
			t.Parallel()
			var hashTime atomic.Int64
			hashTime.Store(int64(25 * time.Millisecond))
			hold := make(chan struct{})
			h, started := timedHasher(t, &hashTime, hold, WithWorkers(tc.workers), WithWaitBudget(time.Second))
			h.hashNS.Store(int64(25 * time.Millisecond)) // as measured by earlier logins
			ctx := t.Context()
			results := make(chan error, tc.workers+tc.wantQueued)
			check := func() { _, err := h.Check(ctx, "", "pw"); results <- err }
			for range tc.workers { // every worker busy
				go check()
				<-started
			}
			for range tc.wantQueued {
				if err := h.Admit(); err != nil {
					t.Fatalf("Admit with %d queued: %v", h.waiting.Load(), err)
				}
				go check()
				n := h.waiting.Load() + 1
				waitFor(t, func() bool { return h.waiting.Load() == n })
			}
			// The next one would wait (40 + ½) × 25 ms ÷ workers, over the budget.
			want := time.Duration(2*tc.wantQueued+1) * 25 * time.Millisecond / time.Duration(2*tc.workers)
			for _, err := range []error{h.Admit(), func() error { _, err := h.Hash(ctx, "x"); return err }()} {
				var busy *BusyError
				if !errors.As(err, &busy) || !errors.Is(err, ErrBusy) || busy.RetryAfter() != want {
					t.Errorf("past the budget: %v, want a BusyError of %v", err, want)
				}
			}
			close(hold)
			for range tc.workers + tc.wantQueued {
				if err := <-results; err != nil {
					t.Errorf("an admitted caller got %v", err)
				}
			}
		})
	}
}

// TestWaitBudgetZeroQueuesNobody: a budget of 0 admits a caller only when a
// worker is free.
func TestWaitBudgetZeroQueuesNobody(t *testing.T) {
	t.Parallel()
	var hashTime atomic.Int64
	hashTime.Store(int64(time.Millisecond))
	hold := make(chan struct{})
	h, started := timedHasher(t, &hashTime, hold, WithWorkers(1), WithWaitBudget(0))
	// No hash measured yet: a budget of 0 still queues nobody.
	done := make(chan error, 1)
	go func() { _, err := h.Hash(t.Context(), "a"); done <- err }()
	<-started
	if _, err := h.Hash(t.Context(), "b"); !errors.Is(err, ErrBusy) {
		t.Errorf("second Hash with budget 0 = %v, want ErrBusy", err)
	}
	close(hold)
	if err := <-done; err != nil {
		t.Error(err)
	}
}
