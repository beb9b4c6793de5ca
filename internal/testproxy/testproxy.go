// Package testproxy is a TCP proxy a test puts between a client and a
// server it owns (identityd and its private redis-server), to make the
// network between them slow, silent or broken on purpose: latency per
// direction, all bytes held (Pause), every connection cut (Drop), and back
// to normal (Resume). It listens on loopback only and stops when the test
// ends. It is for tests only: no load balancing, no protocol knowledge,
// not a chaos tool for anything but a test's own servers.
package testproxy

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy forwards every connection accepted on Addr to the target address.
type Proxy struct {
	ln     net.Listener
	target string
	done   chan struct{} // closed by Close
	wg     sync.WaitGroup

	mu       sync.Mutex
	up, down time.Duration // added to each chunk: client→target, target→client
	paused   chan struct{} // non-nil while paused; closed by Resume
	dropping bool          // Drop: new connections are cut at once
	conns    map[*link]struct{}
	accepted int
}

// chunkSize bounds one read; queueLen bounds the chunks held per
// direction, so a paused or slow proxy holds at most chunkSize×queueLen
// bytes per connection and direction, and then pushes back on the sender
// as a stalled network would.
const (
	chunkSize = 32 << 10
	queueLen  = 64
)

// New starts a proxy to target (host:port) on a free 127.0.0.1 port and
// closes it when t ends.
func New(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testproxy: listen: %v", err)
	}
	p := &Proxy{ln: ln, target: target, done: make(chan struct{}), conns: map[*link]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetLatency delays every chunk of bytes by up on its way to the target and
// by down on its way back, from the moment the proxy read it. It applies to
// chunks already held as well: setting 0 releases them.
func (p *Proxy) SetLatency(up, down time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.up, p.down = up, down
}

// Pause holds every byte in both directions, on open connections and on
// new ones (which are still accepted and connected to the target), until
// Resume: to both sides the peer seems to hang.
func (p *Proxy) Pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.paused == nil {
		p.paused = make(chan struct{})
	}
}

// Drop closes every open connection, and closes new ones as soon as they
// are accepted, until Resume: to the client the server seems to reset
// every connection.
func (p *Proxy) Drop() {
	p.mu.Lock()
	p.dropping = true
	conns := make([]*link, 0, len(p.conns))
	for l := range p.conns {
		conns = append(conns, l)
	}
	p.mu.Unlock()
	for _, l := range conns {
		l.close()
	}
}

// Resume ends Pause and Drop: held bytes flow again and new connections
// are forwarded. Latency stays as set.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropping = false
	if p.paused != nil {
		close(p.paused)
		p.paused = nil
	}
}

// Accepted is how many connections the proxy has accepted so far.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// Open is how many connections are open through the proxy now.
func (p *Proxy) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops listening, closes every connection and waits for the
// proxy's goroutines to end. It may be called more than once.
func (p *Proxy) Close() {
	select {
	case <-p.done:
		return
	default:
	}
	close(p.done)
	p.ln.Close()
	p.mu.Lock()
	conns := make([]*link, 0, len(p.conns))
	for l := range p.conns {
		conns = append(conns, l)
	}
	p.mu.Unlock()
	for _, l := range conns {
		l.close()
	}
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // a passing accept error
			continue
		}
		p.mu.Lock()
		p.accepted++
		dropping := p.dropping
		p.mu.Unlock()
		if dropping {
			c.Close()
			continue
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// link is one proxied connection: client and target sides.
type link struct {
	client, target net.Conn
	closed         chan struct{}
	once           sync.Once
}

func (l *link) close() {
	l.once.Do(func() {
		close(l.closed)
		l.client.Close()
		l.target.Close()
	})
}

func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	target, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		// The target is down: the client sees its connection closed, as
		// it would see a refused one through a real proxy.
		client.Close()
		return
	}
	l := &link{client: client, target: target, closed: make(chan struct{})}
	p.mu.Lock()
	closed := p.isClosed()
	if !closed && !p.dropping {
		p.conns[l] = struct{}{}
	}
	dropped := closed || p.dropping
	p.mu.Unlock()
	if dropped {
		l.close()
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(l, client, target, true) }()
	go func() { defer wg.Done(); p.pipe(l, target, client, false) }()
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, l)
	p.mu.Unlock()
}

func (p *Proxy) isClosed() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

type chunk struct {
	at time.Time
	b  []byte
}

// pipe copies src to dst through a bounded queue: a reader stamps each
// chunk with the time it was read, a writer forwards it once the
// direction's latency has passed since then and the proxy is not paused.
// Either side failing or ending closes the whole link (the clients this
// is for never half-close).
func (p *Proxy) pipe(l *link, src, dst net.Conn, up bool) {
	q := make(chan chunk, queueLen)
	stop := make(chan struct{}) // the writer gave up
	var reader sync.WaitGroup
	defer reader.Wait() // runs last: the link is closed by then, so Read returns
	defer l.close()
	reader.Go(func() {
		defer close(q)
		for {
			b := make([]byte, chunkSize)
			n, err := src.Read(b)
			if n > 0 {
				select {
				case q <- chunk{time.Now(), b[:n]}:
				case <-stop:
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
	defer close(stop)
	for c := range q {
		if !p.hold(l, c.at, up) {
			return
		}
		if _, err := dst.Write(c.b); err != nil {
			return
		}
	}
}

// hold waits until a chunk read at may go on: its direction's latency has
// passed and the proxy is not paused. The settings are read again after
// every change, so SetLatency and Resume act on chunks already held. It
// returns false when the link or the proxy closes.
func (p *Proxy) hold(l *link, at time.Time, up bool) bool {
	for {
		p.mu.Lock()
		paused := p.paused
		delay := p.down
		if up {
			delay = p.up
		}
		p.mu.Unlock()
		if paused != nil {
			select {
			case <-paused:
				continue
			case <-l.closed:
				return false
			}
		}
		wait := time.Until(at.Add(delay))
		if wait <= 0 {
			return true
		}
		// Wake up at least every 50ms to see a new latency or a pause.
		t := time.NewTimer(min(wait, 50*time.Millisecond))
		select {
		case <-t.C:
		case <-l.closed:
			t.Stop()
			return false
		}
	}
}
