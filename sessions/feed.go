package sessions

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/identityd/identity/internal/tokencheck"
	"github.com/identityd/identity/tokenstore"
)

// Feed is the one reader of the store's revocation events in a process.
// It blocks in the store (WaitRevocations: XREAD BLOCK on Redis) rather
// than polling, so an event reaches it as soon as it is appended; it puts
// every event in the instance's revocation set and hands it to every
// subscribed Watcher. The store sees one command in flight per process,
// however many WatchRevocations streams are open: an idle stream costs no
// store command at all.
//
// Why a blocking read of the stream rather than pub/sub: the stream is the
// catch-up log anyway (a reconnecting verifier resumes from its cursor), a
// blocking read cannot lose an event between a disconnect and a
// resubscribe, and it is one key, so it runs unchanged on Redis Cluster.
type Feed struct {
	store   tokenstore.Store
	revoked *tokencheck.Revoked
	cfg     FeedConfig
	now     func() time.Time
	log     *slog.Logger

	mu       sync.Mutex
	cursor   string // newest cursor read; "" before the first read
	watchers map[*Watcher]struct{}
	closed   bool
}

// FeedConfig tunes a Feed.
type FeedConfig struct {
	// Wait is how long one read blocks when nothing happens; every idle
	// read ends with a heartbeat to the watchers, so it must be under the
	// heartbeat interval the API promises (1s).
	Wait time.Duration
	// MaxWatchers caps the open WatchRevocations streams.
	MaxWatchers int
	// WatcherBuffer is how many messages (one per store read, however
	// many events it brought) a slow watcher may fall behind before it is
	// cut (it reconnects and resumes from its cursor).
	WatcherBuffer int
	// OnReset runs when the store could not resume from the feed's cursor
	// (history lost): the caller drops what it cached.
	OnReset func()
}

// Feed defaults.
const (
	DefaultFeedWait      = 500 * time.Millisecond
	DefaultMaxWatchers   = 10_000
	DefaultWatcherBuffer = 64
	feedPage             = 1000
)

// ErrTooManyWatchers: MaxWatchers streams are open.
var ErrTooManyWatchers = errors.New("sessions: too many revocation watchers")

// ErrFeedClosed: the feed has stopped (the server shuts down).
var ErrFeedClosed = errors.New("sessions: revocation feed closed")

// NewFeed returns a feed that fills revoked; Run starts it.
func NewFeed(store tokenstore.Store, revoked *tokencheck.Revoked, cfg FeedConfig, now func() time.Time, log *slog.Logger) *Feed {
	if cfg.Wait <= 0 {
		cfg.Wait = DefaultFeedWait
	}
	if cfg.MaxWatchers <= 0 {
		cfg.MaxWatchers = DefaultMaxWatchers
	}
	if cfg.WatcherBuffer <= 0 {
		cfg.WatcherBuffer = DefaultWatcherBuffer
	}
	if cfg.OnReset == nil {
		cfg.OnReset = func() {}
	}
	return &Feed{store: store, revoked: revoked, cfg: cfg, now: now, log: log, watchers: make(map[*Watcher]struct{})}
}

// Message is what a Watcher receives: the events of one read, oldest
// first, a reset (events may have been lost: distrust what was cached), or
// a heartbeat (no events: every event up to Cursor has been delivered).
// Events is shared by every watcher: read it, never modify it.
type Message struct {
	Cursor string
	Events []tokenstore.Revocation
	Reset  bool
}

// Watcher is one subscription to the feed.
type Watcher struct {
	f *Feed
	// C delivers the messages in order.
	C chan Message
	// Start is the feed's cursor when the subscription began ("" if the
	// feed had not read yet): every event after it arrives on C.
	Start string
	// Done is closed when the watcher is cut (too slow) or the feed closed;
	// Err then says which.
	Done chan struct{}
	err  error
	once sync.Once
}

// Err is ErrTooSlow or ErrFeedClosed once Done is closed.
func (w *Watcher) Err() error {
	w.f.mu.Lock()
	defer w.f.mu.Unlock()
	return w.err
}

// ErrTooSlow: a watcher fell WatcherBuffer messages behind and was cut.
var ErrTooSlow = errors.New("sessions: revocation watcher too slow")

// Close ends the subscription.
func (w *Watcher) Close() {
	w.f.mu.Lock()
	delete(w.f.watchers, w)
	w.f.mu.Unlock()
}

// endLocked closes Done once; the caller holds f.mu.
func (w *Watcher) endLocked(err error) {
	w.once.Do(func() {
		w.err = err
		close(w.Done)
		delete(w.f.watchers, w)
	})
}

// Subscribe starts a Watcher at the feed's current cursor.
func (f *Feed) Subscribe() (*Watcher, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, ErrFeedClosed
	}
	if len(f.watchers) >= f.cfg.MaxWatchers {
		return nil, ErrTooManyWatchers
	}
	w := &Watcher{f: f, C: make(chan Message, f.cfg.WatcherBuffer), Start: f.cursor, Done: make(chan struct{})}
	f.watchers[w] = struct{}{}
	return w, nil
}

// Watchers is the number of open subscriptions.
func (f *Feed) Watchers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.watchers)
}

// publish hands msgs to every watcher, cutting those that cannot take them.
func (f *Feed) publish(m Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cursor = m.Cursor
	for w := range f.watchers {
		select {
		case w.C <- m:
		default:
			w.endLocked(ErrTooSlow)
		}
	}
}

// feedMaxBackoff bounds the wait between failed reads of the store.
const feedMaxBackoff = 500 * time.Millisecond

// Run reads the store until ctx is done, then closes every watcher.
func (f *Feed) Run(ctx context.Context) {
	defer f.close()
	// The whole retained history first, so sessions revoked before this
	// process started are known too.
	cursor := tokenstore.CursorOrigin
	backoff := 50 * time.Millisecond
	failing := false
	// caughtUp: the last read found nothing more to read. Until then the
	// next read does not block, so the set is vouched for as soon as the
	// store has been read to its end (at start, after a failure).
	caughtUp := false
	for ctx.Err() == nil {
		began := f.now()
		wait := f.cfg.Wait
		if !caughtUp {
			wait = 0
		}
		rctx, cancel := context.WithTimeout(ctx, f.cfg.Wait+5*time.Second)
		events, next, ok, err := f.store.WaitRevocations(rctx, cursor, feedPage, wait)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			// Fail closed at once: until a read succeeds, the set does not
			// vouch for any session (Verify asks the store, and fails if it
			// is down; watchers hear no heartbeat and go stale).
			f.revoked.Stale()
			caughtUp = false
			if !failing {
				f.log.Warn("revocation feed: store read failed; retrying", slog.String("error", err.Error()))
				failing = true
			}
			t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			// Capped low: one reader per instance, so retrying costs the
			// store a few reads a second, and after a failover the feed
			// (and the pushed revocations) are back within half a second.
			backoff = min(2*backoff, feedMaxBackoff)
			continue
		}
		if failing {
			f.log.Info("revocation feed: store readable again")
			failing, backoff = false, 50*time.Millisecond
		}
		if !ok {
			// History was lost (store restarted empty, or the cursor fell
			// behind the retention): tokens issued until now cannot be
			// vouched for by the set.
			f.revoked.Reset(began)
			f.cfg.OnReset()
			f.log.Warn("revocation feed: could not resume from its cursor; tokens issued until now are checked against the store")
			f.publish(Message{Cursor: next, Reset: true})
			cursor, caughtUp = next, false
			continue
		}
		now := f.now()
		for _, e := range events {
			f.revoked.Add(e.SessionID, e.ForgetAfter, now)
		}
		cursor = next
		caughtUp = len(events) < feedPage
		if caughtUp {
			// Caught up with everything appended before the read began.
			f.revoked.Heard(began)
		}
		// With no events, this is the heartbeat of an idle feed.
		f.publish(Message{Cursor: cursor, Events: events})
	}
}

func (f *Feed) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for w := range f.watchers {
		w.endLocked(ErrFeedClosed)
	}
}
