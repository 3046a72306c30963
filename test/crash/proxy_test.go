package crash

import (
	"io"
	"net"
	"sync"
	"time"
)

// outageProxy forwards TCP to the API server. An outage drops every open
// connection (watches included) and refuses new ones for a while: from the
// operator's side the API server went away and came back.
type outageProxy struct {
	target string
	addr   string

	mu    sync.Mutex
	l     net.Listener
	conns map[net.Conn]struct{}
}

func newOutageProxy(target string) (*outageProxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &outageProxy{target: target, addr: l.Addr().String(), conns: map[net.Conn]struct{}{}}
	p.serve(l)
	return p, nil
}

func (p *outageProxy) serve(l net.Listener) {
	p.mu.Lock()
	p.l = l
	p.mu.Unlock()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go p.forward(c)
		}
	}()
}

func (p *outageProxy) forward(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		_ = c.Close()
		return
	}
	p.track(c, up)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
	_ = c.Close()
	_ = up.Close()
}

func (p *outageProxy) track(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
}

// outage cuts every connection and refuses new ones for d.
func (p *outageProxy) outage(d time.Duration) error {
	p.mu.Lock()
	_ = p.l.Close()
	for c := range p.conns {
		_ = c.Close()
	}
	p.conns = map[net.Conn]struct{}{}
	p.mu.Unlock()
	time.Sleep(d)
	l, err := net.Listen("tcp", p.addr)
	if err != nil {
		return err
	}
	p.serve(l)
	return nil
}

func (p *outageProxy) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.l.Close()
	for c := range p.conns {
		_ = c.Close()
	}
}
