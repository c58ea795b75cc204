package daemon

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"
)

// The control channel: a unix stream socket, owner-only (0600, in a 0700 directory),
// carrying line-delimited JSON. Each request is one JSON object on one line; each answer
// is one JSON object on one line, in order. See docs/FORMAT.md section 1.1.

// Request is one control request.
type Request struct {
	// Op is "attach" or "status".
	Op string `json:"op"`
	// Project and Subscription name a subscription (Subscription may also be a full
	// projects/<p>/subscriptions/<s> name). On a ring set's own socket they default to
	// that ring set.
	Project      string `json:"project,omitempty"`
	Subscription string `json:"subscription,omitempty"`
	// Partitions (attach only) is the number of virtual partitions; pullerd's default if 0.
	Partitions int `json:"partitions,omitempty"`
	// Streams (attach only) is the host's share of StreamingPull streams for the
	// subscription, as a cluster-wide quota split it: pullerd runs min(its own number,
	// Streams) streams, its own number being min(-streams, partitions,
	// -stream-budget/-hosts); 0 asks for its own number. Absent, the first attach runs
	// pullerd's own number and a later attach leaves the count as it is; present, a later
	// attach resizes the running subscription (docs/FORMAT.md section 1.1).
	Streams *int `json:"streams,omitempty"`

	// attach_topic (the write path, docs/FORMAT.md section 6): Topic is a topic ID (with
	// Project) or a full projects/<p>/topics/<t> name; Label describes the writer in logs
	// and status; RingCapacity, LingerMs and MaxRequestBytes override pullerd's defaults
	// for this writer (0: default).
	Topic           string  `json:"topic,omitempty"`
	Label           string  `json:"label,omitempty"`
	RingCapacity    int64   `json:"ring_capacity,omitempty"`
	LingerMs        float64 `json:"linger_ms,omitempty"`
	MaxRequestBytes int64   `json:"max_request_bytes,omitempty"`
}

// Response answers one Request.
type Response struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// RingSet is the attached ring set (attach, or status of one subscription).
	RingSet *RingSetStatus `json:"ring_set,omitempty"`
	// RingSets lists every attached ring set (status without a subscription).
	RingSets []RingSetStatus `json:"ring_sets,omitempty"`
	// Writer is the ring pair attach_topic created.
	Writer *WriterStatus `json:"writer,omitempty"`
	// Writers lists the attached writers (status without a subscription).
	Writers []WriterStatus `json:"writers,omitempty"`
}

// maxRequestLine bounds one request line.
const maxRequestLine = 64 << 10

// control serves the control sockets of one Daemon.
type control struct {
	d   *Daemon
	log *zap.Logger

	mu     sync.Mutex
	lns    map[*listener]struct{}
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// listener is one control socket.
type listener struct {
	c    *control
	ln   *net.UnixListener
	path string
	def  *Sub // the ring set's subscription, nil for the root socket
}

// listen serves the control protocol on a unix socket at path (mode 0600). An existing
// socket is refused if something answers on it (another pullerd) and replaced otherwise.
func (c *control) listen(path string, def *Sub) (*listener, error) {
	if _, err := os.Lstat(path); err == nil {
		if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
			conn.Close()
			return nil, fmt.Errorf("%w: control socket %q answers; stop that pullerd or give this one another -shm-dir", ErrInUse, path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale control socket %q: %w", path, err)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on control socket %q: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod control socket %q: %w", path, err)
	}
	l := &listener{c: c, ln: ln, path: path, def: def}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		ln.Close()
		return nil, errors.New("pullerd is shutting down")
	}
	c.lns[l] = struct{}{}
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		l.serve()
	}()
	return l, nil
}

// close stops accepting on the socket and removes it.
func (l *listener) close() {
	l.c.mu.Lock()
	delete(l.c.lns, l)
	l.c.mu.Unlock()
	l.ln.Close() // unlinks the socket file
}

func (l *listener) serve() {
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			return
		}
		c := l.c
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			conn.Close()
			return
		}
		c.conns[conn] = struct{}{}
		c.wg.Add(1)
		c.mu.Unlock()
		go func() {
			defer c.wg.Done()
			l.handleConn(conn)
			c.mu.Lock()
			delete(c.conns, conn)
			c.mu.Unlock()
			conn.Close()
		}()
	}
}

func (l *listener) handleConn(conn net.Conn) {
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 4096), maxRequestLine)
	enc := json.NewEncoder(conn)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if err := enc.Encode(l.handle(line)); err != nil {
			return
		}
	}
	if err := sc.Err(); err != nil {
		_ = enc.Encode(Response{Error: fmt.Sprintf("bad request: %v (one JSON object per line, at most %d bytes)", err, maxRequestLine)})
	}
}

// handle answers one request line.
func (l *listener) handle(line []byte) Response {
	var req Request
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return Response{Error: fmt.Sprintf("bad request: %v; want one JSON object per line such as {\"op\":\"status\"}", err)}
	}
	if dec.More() {
		return Response{Error: "bad request: more than one JSON value on the line"}
	}
	d := l.c.d
	if req.Op == "attach_topic" {
		return l.attachTopic(req)
	}
	if req.Topic != "" || req.Label != "" || req.RingCapacity != 0 || req.LingerMs != 0 || req.MaxRequestBytes != 0 {
		return Response{Error: "bad request: topic, label, ring_capacity, linger_ms and max_request_bytes are only for attach_topic"}
	}
	named := req.Subscription != "" || req.Project != ""
	var sub Sub
	if named {
		project := req.Project
		if project == "" && l.def != nil {
			project = l.def.Project
		}
		var err error
		if sub, err = ParseSub(req.Subscription, project); err != nil {
			return Response{Error: "bad request: " + err.Error()}
		}
	} else if l.def != nil {
		sub = *l.def
		named = true
	}
	switch req.Op {
	case "attach":
		if !named {
			return Response{Error: "bad request: attach needs a subscription (and a project unless it is a full name)"}
		}
		if req.Partitions < 0 || req.Partitions > MaxPartitions {
			return Response{Error: fmt.Sprintf("bad request: partitions=%d: want 1..%d, or 0 for pullerd's default", req.Partitions, MaxPartitions)}
		}
		streams := streamsUnset
		if req.Streams != nil {
			streams = *req.Streams
			if streams < 0 || streams > MaxStreams {
				return Response{Error: fmt.Sprintf("bad request: streams=%d: want 1..%d, or 0 for pullerd's own number", streams, MaxStreams)}
			}
		}
		sub.Partitions = req.Partitions
		st, err := d.attach(sub, streams)
		if err != nil {
			return Response{Error: err.Error()}
		}
		return Response{OK: true, RingSet: &st}
	case "status":
		if req.Partitions != 0 {
			return Response{Error: "bad request: partitions is only for attach"}
		}
		if req.Streams != nil {
			return Response{Error: fmt.Sprintf("bad request: streams=%d: streams is only for attach", *req.Streams)}
		}
		if named {
			s := d.lookup(sub.FullName())
			if s == nil {
				return Response{Error: fmt.Sprintf("subscription %s is not attached (attach it first)", sub.FullName())}
			}
			st := s.status()
			return Response{OK: true, RingSet: &st}
		}
		return Response{OK: true, RingSets: d.statusAll(), Writers: d.pub.statusAll()}
	case "":
		return Response{Error: "bad request: no op; want \"attach\", \"attach_topic\" or \"status\""}
	default:
		return Response{Error: fmt.Sprintf("bad request: unknown op %q; want \"attach\", \"attach_topic\" or \"status\"", req.Op)}
	}
}

// attachTopic answers attach_topic: a new writer ring pair for a topic.
func (l *listener) attachTopic(req Request) Response {
	if req.Subscription != "" || req.Partitions != 0 || req.Streams != nil {
		return Response{Error: "bad request: attach_topic takes a topic, not subscription, partitions or streams"}
	}
	if req.Topic == "" {
		return Response{Error: "bad request: attach_topic needs a topic (and a project unless it is a full name)"}
	}
	project := req.Project
	if project == "" && l.def != nil {
		project = l.def.Project
	}
	t, err := ParseTopic(req.Topic, project)
	if err != nil {
		return Response{Error: "bad request: " + err.Error()}
	}
	if req.LingerMs < 0 || req.LingerMs > 60_000 {
		return Response{Error: fmt.Sprintf("bad request: linger_ms=%v: want 0..60000", req.LingerMs)}
	}
	st, err := l.c.d.pub.attach(AttachTopicRequest{Topic: t, Label: req.Label, RingCapacity: req.RingCapacity,
		Linger: time.Duration(req.LingerMs * float64(time.Millisecond)), MaxRequestBytes: req.MaxRequestBytes})
	if err != nil {
		return Response{Error: err.Error()}
	}
	return Response{OK: true, Writer: &st}
}

// closeAll stops every listener and connection and waits for their goroutines.
func (c *control) closeAll() {
	c.mu.Lock()
	c.closed = true
	for l := range c.lns {
		l.ln.Close()
	}
	for conn := range c.conns {
		conn.Close()
	}
	c.mu.Unlock()
	c.wg.Wait()
}
