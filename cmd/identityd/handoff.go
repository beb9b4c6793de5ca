package main

import (
	"errors"
	"net"
	"sync"
	"time"
)

// handoff passes the connections of one bound listener to a succession of
// servers: the waiting server while identityd waits for its store, then
// the real one. The port stays bound across the switch, so a client never
// finds it closed, and no other process can take it in between.
type handoff struct {
	ln   net.Listener
	mu   sync.Mutex
	cur  *passListener
	done chan struct{} // closed when the accept loop has ended
}

func newHandoff(ln net.Listener) *handoff {
	h := &handoff{ln: ln, done: make(chan struct{})}
	go h.run()
	return h
}

// next returns a listener that gets every connection accepted from now on;
// the previous one gets no more (its server drains what it has).
func (h *handoff) next() net.Listener { return h.nextListener(nil) }

// last is next for the last server: closing it closes the bound listener,
// so that once that server stops taking connections, clients are refused
// at connect. (Were the port still bound, the kernel would complete their
// handshakes, the handoff would close each connection after the client
// had sent its request, and the client could not tell whether it ran.)
func (h *handoff) last() net.Listener {
	return h.nextListener(func() { h.ln.Close() })
}

func (h *handoff) nextListener(onClose func()) net.Listener {
	l := &passListener{addr: h.ln.Addr(), conns: make(chan net.Conn), closed: make(chan struct{}), onClose: onClose}
	h.mu.Lock()
	h.cur = l
	h.mu.Unlock()
	return l
}

// Close closes the bound listener and waits for the accept loop to end.
func (h *handoff) Close() error {
	err := h.ln.Close()
	<-h.done
	return err
}

func (h *handoff) run() {
	defer close(h.done)
	var backoff time.Duration
	for {
		c, err := h.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// Out of file descriptors and the like: wait, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		h.deliver(c)
	}
}

// deliver hands c to the current listener's server, waiting until that
// server accepts it. If the listener closes meanwhile and no newer one has
// come, nobody serves any more and c is closed.
func (h *handoff) deliver(c net.Conn) {
	for {
		h.mu.Lock()
		l := h.cur
		h.mu.Unlock()
		if l == nil {
			c.Close()
			return
		}
		select {
		case l.conns <- c:
			return
		case <-l.closed:
			h.mu.Lock()
			same := h.cur == l
			h.mu.Unlock()
			if same {
				c.Close()
				return
			}
		}
	}
}

// passListener is one server's share of a handoff.
type passListener struct {
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
	// onClose, if set, runs once, on the first Close.
	onClose func()
}

func (l *passListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close stops this listener only; the bound one stays with the handoff,
// unless this is its last listener.
func (l *passListener) Close() error {
	l.once.Do(func() {
		close(l.closed)
		if l.onClose != nil {
			l.onClose()
		}
	})
	return nil
}

func (l *passListener) Addr() net.Addr { return l.addr }
