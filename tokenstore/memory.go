package tokenstore

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Memory is the embedded single-instance Store: everything lives in this
// process behind one mutex and is lost when it exits. Expired sessions are
// swept at most every sweepEvery while the store is written to, and
// revocation events are trimmed on every append, so memory stays bounded by
// the live sessions and one retention window of events.
type Memory struct {
	o options

	mu        sync.Mutex
	users     map[string]memUser // by id
	names     map[string]string  // username -> id
	sessions  map[string]*memSession
	byUser    map[string]map[string]struct{} // user id -> session ids
	events    []Revocation                   // oldest first
	lastID    streamID                       // newest event id ever appended
	trimmedID streamID                       // newest event id trimmed
	keyring   []byte
	lastSweep time.Time
	// appended is closed (and replaced) whenever events are appended, to
	// wake WaitRevocations.
	appended chan struct{}
}

const sweepEvery = time.Minute

type memUser struct {
	u       User
	version uint64
}

type memSession struct {
	s Session
	// expireAt is min(LastUsedAt+idle, ExpiresAt): what a Redis key TTL is.
	expireAt time.Time
	// tat is the use limit's theoretical arrival time (GCRA).
	tat time.Time
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store. It honours WithIdleTTL,
// WithRevocationRetention and WithClock.
func NewMemory(opts ...Option) *Memory {
	return &Memory{
		o:        newOptions(opts),
		users:    make(map[string]memUser),
		names:    make(map[string]string),
		sessions: make(map[string]*memSession),
		byUser:   make(map[string]map[string]struct{}),
		appended: make(chan struct{}),
	}
}

func cloneUser(u User) User {
	u.Roles = slices.Clone(u.Roles)
	u.CreatedAt = truncMS(u.CreatedAt)
	return u
}

func (m *Memory) CreateUser(ctx context.Context, u User) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	if err := checkNewUser(u); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.users[u.ID]; ok {
		if cur.u.Username == u.Username && cur.u.CreatedAt.Equal(truncMS(u.CreatedAt)) {
			return nil // the same user again, as a retried Redis call would be
		}
		return fmt.Errorf("tokenstore: create user: id %w", ErrAlreadyExists)
	}
	if _, ok := m.names[u.Username]; ok {
		return fmt.Errorf("tokenstore: create user: %w", ErrAlreadyExists)
	}
	m.users[u.ID] = memUser{u: cloneUser(u)}
	m.names[u.Username] = u.ID
	return nil
}

func (m *Memory) UserByName(ctx context.Context, username string) (User, error) {
	if err := ctxErr(ctx); err != nil {
		return User{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	id, ok := m.names[username]
	if !ok {
		return User{}, fmt.Errorf("tokenstore: user: %w", ErrNotFound)
	}
	return cloneUser(m.users[id].u), nil
}

func (m *Memory) UserByID(ctx context.Context, id string) (User, error) {
	if err := ctxErr(ctx); err != nil {
		return User{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	mu, ok := m.users[id]
	if !ok {
		return User{}, fmt.Errorf("tokenstore: user: %w", ErrNotFound)
	}
	return cloneUser(mu.u), nil
}

func (m *Memory) ListUsers(ctx context.Context) ([]User, error) {
	if err := ctxErr(ctx); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]User, 0, len(m.users))
	for _, mu := range m.users {
		out = append(out, cloneUser(mu.u))
	}
	slices.SortFunc(out, func(a, b User) int { return cmp.Compare(a.Username, b.Username) })
	return out, nil
}

// UpdateUser calls fn without holding the lock (fn may be slow or use the
// store) and stores its result only if nobody updated the user meanwhile;
// otherwise it calls fn again on the newer user.
func (m *Memory) UpdateUser(ctx context.Context, id string, fn func(User) (User, error)) (User, error) {
	for {
		if err := ctxErr(ctx); err != nil {
			return User{}, err
		}
		m.mu.Lock()
		cur, ok := m.users[id]
		m.mu.Unlock()
		if !ok {
			return User{}, fmt.Errorf("tokenstore: update user: %w", ErrNotFound)
		}
		next, err := fn(cloneUser(cur.u))
		if err != nil {
			return User{}, err
		}
		if err := checkUpdate(cur.u, next); err != nil {
			return User{}, err
		}
		next = cloneUser(next)
		m.mu.Lock()
		now, ok := m.users[id]
		if ok && now.version == cur.version {
			m.users[id] = memUser{u: next, version: cur.version + 1}
			m.mu.Unlock()
			return cloneUser(next), nil
		}
		m.mu.Unlock()
	}
}

func (m *Memory) CreateSession(ctx context.Context, s Session) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	if err := checkNewSession(s); err != nil {
		return err
	}
	s = normSession(s)
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.o.now()
	m.maybeSweep(now)
	if cur, ok := m.sessions[s.ID]; ok {
		if cur.s.Nonce == s.Nonce {
			return nil // the same session again, as a retried Redis call would be
		}
		return fmt.Errorf("tokenstore: create session: id %w", ErrAlreadyExists)
	}
	u, ok := m.users[s.UserID]
	if !ok {
		return fmt.Errorf("tokenstore: create session: user %w", ErrNotFound)
	}
	if u.u.Epoch != s.Epoch {
		return fmt.Errorf("tokenstore: create session: %w", ErrStale)
	}
	ent := &memSession{s: s, expireAt: s.IdleExpiresAt(m.o.idleTTL)}
	if !now.Before(ent.expireAt) {
		return nil // born expired: nothing to keep, as with a Redis TTL in the past
	}
	m.sessions[s.ID] = ent
	set := m.byUser[s.UserID]
	if set == nil {
		set = make(map[string]struct{})
		m.byUser[s.UserID] = set
	}
	set[s.ID] = struct{}{}
	return nil
}

func (m *Memory) Session(ctx context.Context, id string) (Session, error) {
	if err := ctxErr(ctx); err != nil {
		return Session{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ent, ok := m.live(id, m.o.now())
	if !ok {
		return Session{}, fmt.Errorf("tokenstore: session: %w", ErrNotFound)
	}
	return ent.s, nil
}

// live returns the session if it exists and has not expired at now. It
// leaves expired ones to maybeSweep, which goes by the store's clock: now
// may be a caller's.
func (m *Memory) live(id string, now time.Time) (*memSession, bool) {
	ent, ok := m.sessions[id]
	if !ok || !now.Before(ent.expireAt) {
		return nil, false
	}
	return ent, true
}

func (m *Memory) remove(s Session) {
	delete(m.sessions, s.ID)
	if set := m.byUser[s.UserID]; set != nil {
		delete(set, s.ID)
		if len(set) == 0 {
			delete(m.byUser, s.UserID)
		}
	}
}

// rotatedUser is the user Rotate returns: without the password hash, which
// a refresh has no use for (Store.Rotate).
func rotatedUser(u User) User {
	u = cloneUser(u)
	u.PasswordHash = ""
	return u
}

func (m *Memory) Rotate(ctx context.Context, r RotateRequest) (Session, User, error) {
	if err := ctxErr(ctx); err != nil {
		return Session{}, User{}, err
	}
	now := truncMS(r.Now)
	idle := r.IdleTTL
	if idle <= 0 {
		idle = m.o.idleTTL
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.maybeSweep(m.o.now())
	ent, ok := m.live(r.SessionID, now)
	if !ok || ent.s.Nonce != r.Nonce || r.Generation > ent.s.Generation {
		return Session{}, User{}, fmt.Errorf("tokenstore: rotate: %w", ErrNotFound)
	}
	s := ent.s
	mu, ok := m.users[s.UserID]
	if !ok {
		return Session{}, User{}, fmt.Errorf("tokenstore: rotate: %w", ErrNotFound)
	}
	if mu.u.Epoch != s.Epoch {
		m.appendRevocations(now, s.ID)
		m.remove(s)
		return Session{}, User{}, fmt.Errorf("tokenstore: rotate: %w", ErrNotFound)
	}
	// The use limit (GCRA), for the current and the grace generation only;
	// the new arrival time is kept only on the paths that count as a use.
	tat := ent.tat
	every := r.Limit.Every.Truncate(time.Millisecond)
	if every > 0 && (r.Generation == s.Generation || r.Generation == s.Generation-1) {
		if tat.Before(now) {
			tat = now
		}
		if ahead := tat.Sub(now) - time.Duration(max(1, r.Limit.Burst)-1)*every; ahead > 0 {
			return Session{}, User{}, fmt.Errorf("tokenstore: rotate: %w", &TooFastError{After: ahead})
		}
		tat = tat.Add(every)
	}
	switch {
	case r.Generation == s.Generation:
		s.Generation++
		s.RotatedAt, s.LastUsedAt = now, now
		ent.s = s
		ent.expireAt = s.IdleExpiresAt(idle)
		ent.tat = tat
		ent.s = withClient(s, r)
		return ent.s, rotatedUser(mu.u), nil
	case r.Generation == s.Generation-1 && now.Sub(s.RotatedAt) <= r.Grace:
		ent.tat = tat
		ent.s = withClient(s, r)
		return ent.s, rotatedUser(mu.u), nil
	default:
		m.appendRevocations(now, s.ID)
		m.remove(s)
		return Session{}, User{}, fmt.Errorf("tokenstore: rotate: %w", ErrReused)
	}
}

// withClient is s with the client of use r, where r names one.
func withClient(s Session, r RotateRequest) Session {
	if r.UserAgent != "" {
		s.UserAgent = r.UserAgent
	}
	if r.ClientAddr != "" {
		s.ClientAddr = r.ClientAddr
	}
	return s
}

func (m *Memory) ListSessions(ctx context.Context, userID string) ([]Session, error) {
	if err := ctxErr(ctx); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.o.now()
	var out []Session
	for id := range m.byUser[userID] {
		if ent, ok := m.live(id, now); ok {
			out = append(out, ent.s)
		}
	}
	sortSessions(out)
	return out, nil
}

func (m *Memory) AdoptSession(ctx context.Context, id string, epoch uint64) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ent, ok := m.live(id, m.o.now())
	if !ok {
		return fmt.Errorf("tokenstore: adopt session: %w", ErrNotFound)
	}
	if u, ok := m.users[ent.s.UserID]; !ok || u.u.Epoch != epoch {
		return fmt.Errorf("tokenstore: adopt session: %w", ErrStale)
	}
	ent.s.Epoch = epoch
	return nil
}

func (m *Memory) RevokeSession(ctx context.Context, id string, now time.Time) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	now = truncMS(now)
	m.mu.Lock()
	defer m.mu.Unlock()
	ent, ok := m.live(id, m.o.now())
	if !ok {
		return fmt.Errorf("tokenstore: revoke session: %w", ErrNotFound)
	}
	m.appendRevocations(now, id)
	m.remove(ent.s)
	return nil
}

func (m *Memory) RevokeUserSessions(ctx context.Context, userID string, now time.Time, except ...string) ([]string, error) {
	if err := ctxErr(ctx); err != nil {
		return nil, err
	}
	now = truncMS(now)
	m.mu.Lock()
	defer m.mu.Unlock()
	clock := m.o.now()
	var ids []string
	for id := range m.byUser[userID] {
		if _, ok := m.live(id, clock); ok && !slices.Contains(except, id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	m.appendRevocations(now, ids...)
	for _, id := range ids {
		m.remove(m.sessions[id].s)
	}
	return ids, nil
}

// appendRevocations records events revoked at now and trims those that
// fell out of the retention window (see cursor.go). Callers hold mu.
func (m *Memory) appendRevocations(now time.Time, sessionIDs ...string) {
	if len(sessionIDs) == 0 {
		return
	}
	close(m.appended)
	m.appended = make(chan struct{})
	at := ms(now)
	for _, sid := range sessionIDs {
		m.lastID = m.lastID.next(at)
		uid, _ := SessionUserID(sid)
		m.events = append(m.events, Revocation{
			Cursor:      m.lastID.String(),
			SessionID:   sid,
			UserID:      uid,
			RevokedAt:   now,
			ForgetAfter: now.Add(m.o.retention),
		})
	}
	minID := streamID{ms: uint64(max(0, at-m.o.retention.Milliseconds()))}
	cut := 0
	for cut < len(m.events) {
		id, _ := parseStreamID(m.events[cut].Cursor)
		if !id.less(minID) {
			break
		}
		m.trimmedID = id
		cut++
	}
	if cut > 0 {
		m.events = slices.Delete(m.events, 0, cut)
	}
}

func (m *Memory) Revocations(ctx context.Context, cursor string, limit int) ([]Revocation, string, bool, error) {
	if err := ctxErr(ctx); err != nil {
		return nil, "", false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	latest := m.lastID.String()
	if cursor == "" {
		return nil, latest, true, nil
	}
	c, ok := parseStreamID(cursor)
	if cursor == CursorOrigin {
		c, ok = streamID{}, true
	} else if !ok || c.less(m.trimmedID) || m.lastID.less(c) {
		return nil, latest, false, nil
	}
	i, _ := slices.BinarySearchFunc(m.events, c, func(r Revocation, c streamID) int {
		id, _ := parseStreamID(r.Cursor)
		switch {
		case id.less(c):
			return -1
		case c.less(id):
			return 1
		}
		return 0
	})
	if i < len(m.events) && m.events[i].Cursor == cursor {
		i++ // strictly after cursor
	}
	end := min(len(m.events), i+clampLimit(limit))
	events := slices.Clone(m.events[i:end])
	next := c.String()
	if len(events) > 0 {
		next = events[len(events)-1].Cursor
	} else if cursor == CursorOrigin {
		next = latest
	}
	return events, next, true, nil
}

func (m *Memory) WaitRevocations(ctx context.Context, cursor string, limit int, wait time.Duration) ([]Revocation, string, bool, error) {
	if cursor == "" || wait <= 0 {
		return m.Revocations(ctx, cursor, limit)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		m.mu.Lock()
		woken := m.appended
		m.mu.Unlock()
		events, next, ok, err := m.Revocations(ctx, cursor, limit)
		if err != nil || !ok || len(events) > 0 {
			return events, next, ok, err
		}
		select {
		case <-woken:
		case <-t.C:
			return nil, next, true, nil
		case <-ctx.Done():
			return nil, "", false, ctxErr(ctx)
		}
	}
}

func (m *Memory) Keyring(ctx context.Context) ([]byte, error) {
	if err := ctxErr(ctx); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return bytes.Clone(m.keyring), nil
}

// SwapKeyring also succeeds when the keyring already equals new, as the
// Redis store does so a retried swap is not a conflict.
func (m *Memory) SwapKeyring(ctx context.Context, old, new []byte) (bool, error) {
	if err := ctxErr(ctx); err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if sameBlob(m.keyring, new) {
		return true, nil
	}
	if !sameBlob(m.keyring, old) {
		return false, nil
	}
	m.keyring = bytes.Clone(new)
	return true, nil
}

// sameBlob compares keyrings where nil means absent (and differs from empty).
func sameBlob(a, b []byte) bool {
	return (a == nil) == (b == nil) && bytes.Equal(a, b)
}

func (m *Memory) Ping(ctx context.Context) error { return ctxErr(ctx) }

func (m *Memory) Close() error { return nil }

// maybeSweep drops expired sessions at most every sweepEvery. Callers hold mu.
func (m *Memory) maybeSweep(now time.Time) {
	if now.Sub(m.lastSweep) < sweepEvery && !now.Before(m.lastSweep) {
		return
	}
	m.lastSweep = now
	for _, ent := range m.sessions {
		if !now.Before(ent.expireAt) {
			m.remove(ent.s)
		}
	}
}

// Validation shared by both stores: programming errors, not domain errors.

func checkNewUser(u User) error {
	if !ValidUserID(u.ID) {
		return errors.New("tokenstore: create user: malformed user id")
	}
	if u.Username == "" {
		return errors.New("tokenstore: create user: empty username")
	}
	if len(u.PasswordHash) > MaxPasswordHash {
		return fmt.Errorf("tokenstore: create user: password hash of %d bytes, more than %d", len(u.PasswordHash), MaxPasswordHash)
	}
	return nil
}

func checkUpdate(old, new User) error {
	if new.ID != old.ID || new.Username != old.Username || !truncMS(new.CreatedAt).Equal(truncMS(old.CreatedAt)) {
		return errors.New("tokenstore: update user: ID, Username and CreatedAt cannot change")
	}
	if new.Epoch < old.Epoch {
		return errors.New("tokenstore: update user: the credential epoch cannot go back")
	}
	if len(new.PasswordHash) > MaxPasswordHash {
		return fmt.Errorf("tokenstore: update user: password hash of %d bytes, more than %d", len(new.PasswordHash), MaxPasswordHash)
	}
	return nil
}

func checkNewSession(s Session) error {
	uid, ok := SessionUserID(s.ID)
	if !ok || uid != s.UserID {
		return errors.New("tokenstore: create session: malformed session id or not of UserID")
	}
	return nil
}

func normSession(s Session) Session {
	s.CreatedAt = truncMS(s.CreatedAt)
	s.RotatedAt = truncMS(s.RotatedAt)
	s.LastUsedAt = truncMS(s.LastUsedAt)
	s.ExpiresAt = truncMS(s.ExpiresAt)
	return s
}

// sortSessions orders oldest first, ties by id so the order is stable.
func sortSessions(ss []Session) {
	slices.SortFunc(ss, func(a, b Session) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
}
