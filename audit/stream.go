package audit

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Stream appends events to a Redis stream (XADD key MAXLEN ~ maxLen), for
// a collector to read with XREAD or a consumer group. Record only queues:
// one goroutine writes the queue out in pipelined batches, so a slow or
// unreachable Redis neither slows nor fails the RPC being recorded. An
// event that finds the queue full, or whose write fails, is dropped and
// counted (Dropped): the audit log still has it.
//
// The stream is one key, so it sits in one slot on Redis Cluster. Its
// length is bounded by the approximate trim of every XADD: Redis trims
// whole nodes of the stream, so it may hold up to a node (100 entries by
// default, stream-node-max-entries) more than maxLen.
type Stream struct {
	rdb     redis.UniversalClient
	key     string
	maxLen  int64
	timeout time.Duration
	log     *slog.Logger

	queue   chan Event
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	dropped atomic.Uint64
	written atomic.Uint64
	// lastWarn is when a failed write was last logged (Unix ns).
	lastWarn atomic.Int64
}

// StreamOption configures a Stream.
type StreamOption func(*Stream)

// Stream defaults.
const (
	DefaultStreamMaxLen = 100_000
	DefaultQueueSize    = 10_000
	maxBatch            = 128
)

// WithQueueSize is how many events may wait to be written.
func WithQueueSize(n int) StreamOption {
	return func(s *Stream) { s.queue = make(chan Event, max(1, n)) }
}

// WithWriteTimeout bounds one batch's round trip (default 2s).
func WithWriteTimeout(d time.Duration) StreamOption { return func(s *Stream) { s.timeout = d } }

// WithLogger is where failed writes are reported (at most one line a
// minute; default: nowhere).
func WithLogger(l *slog.Logger) StreamOption { return func(s *Stream) { s.log = l } }

// NewStream starts a Stream writing to key on rdb; Close stops it.
// maxLen <= 0 is DefaultStreamMaxLen.
func NewStream(rdb redis.UniversalClient, key string, maxLen int64, opts ...StreamOption) *Stream {
	if maxLen <= 0 {
		maxLen = DefaultStreamMaxLen
	}
	s := &Stream{
		rdb: rdb, key: key, maxLen: maxLen, timeout: 2 * time.Second,
		log:  slog.New(slog.DiscardHandler),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	for _, o := range opts {
		o(s)
	}
	if s.queue == nil {
		s.queue = make(chan Event, DefaultQueueSize)
	}
	go s.run()
	return s
}

// Key is the stream's Redis key.
func (s *Stream) Key() string { return s.key }

// Record queues e, or drops it if the queue is full. It never blocks.
// Enabled is always true: the stream takes every event.
func (s *Stream) Enabled(context.Context) bool { return true }

func (s *Stream) Record(_ context.Context, e Event) {
	select {
	case s.queue <- e:
	default:
		s.dropped.Add(1)
	}
}

// Dropped is how many events never reached the stream: the queue was full
// or their write failed.
func (s *Stream) Dropped() uint64 { return s.dropped.Load() }

// Written is how many events were appended.
func (s *Stream) Written() uint64 { return s.written.Load() }

// Close writes out what is queued, for as long as ctx allows, and stops
// the writer. Events recorded after Close are dropped.
func (s *Stream) Close(ctx context.Context) {
	s.once.Do(func() { close(s.stop) })
	select {
	case <-s.done:
	case <-ctx.Done():
	}
}

func (s *Stream) run() {
	defer close(s.done)
	batch := make([]Event, 0, maxBatch)
	for {
		select {
		case e := <-s.queue:
			batch = append(batch[:0], e)
		case <-s.stop:
			s.drain(batch)
			return
		}
		batch = s.fill(batch)
		s.write(batch)
	}
}

// fill adds what is already queued to batch, up to maxBatch.
func (s *Stream) fill(batch []Event) []Event {
	for len(batch) < maxBatch {
		select {
		case e := <-s.queue:
			batch = append(batch, e)
		default:
			return batch
		}
	}
	return batch
}

// drain writes out the queue at Close; what is recorded meanwhile is
// dropped.
func (s *Stream) drain(batch []Event) {
	for {
		batch = s.fill(batch[:0])
		if len(batch) == 0 {
			// Late events find the queue with room but no writer: count
			// them from here on.
			s.closeQueue()
			return
		}
		s.write(batch)
	}
}

// closeQueue counts whatever is still queued as dropped.
func (s *Stream) closeQueue() {
	for {
		select {
		case <-s.queue:
			s.dropped.Add(1)
		default:
			return
		}
	}
}

func (s *Stream) write(batch []Event) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	cmds, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, e := range batch {
			p.XAdd(ctx, &redis.XAddArgs{Stream: s.key, MaxLen: s.maxLen, Approx: true, Values: e.fields()})
		}
		return nil
	})
	failed := 0
	for _, c := range cmds {
		if c.Err() != nil {
			failed++
		}
	}
	if len(cmds) < len(batch) {
		failed += len(batch) - len(cmds)
	}
	s.written.Add(uint64(len(batch) - failed))
	if failed > 0 {
		s.dropped.Add(uint64(failed))
		msg := "write failed"
		if err != nil {
			msg = err.Error()
		}
		now := time.Now().UnixNano()
		if last := s.lastWarn.Load(); now-last >= int64(time.Minute) && s.lastWarn.CompareAndSwap(last, now) {
			s.log.Warn("audit events not written to the Redis stream (counted in identity_audit_events_dropped_total)",
				slog.String("stream", s.key), slog.Int("events", failed), slog.String("error", msg))
		}
	}
}
