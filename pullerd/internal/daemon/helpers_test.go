package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/pubsub-shm/pubsub-shm/pullerd/emulator"
	"github.com/pubsub-shm/pubsub-shm/pullerd/internal/testreader"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start")); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines left behind:", err)
			code = 1
		}
	}
	os.Exit(code)
}

const project = emulator.DefaultProject

// shmRoot returns a fresh ring root under /dev/shm, removed when the test ends; the test
// fails if pullerd left anything in it.
func shmRoot(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("/dev/shm", "pubsub-shm-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// newEmulator starts an emulator with topic "t" and subscription "s" (and extra ones).
func newEmulator(t testing.TB, ackDeadline time.Duration, subs ...string) *emulator.Server {
	t.Helper()
	cfg := emulator.Config{Topics: []string{"t"}, AckDeadline: ackDeadline}
	for _, s := range append([]string{"sub"}, subs...) {
		cfg.Subscriptions = append(cfg.Subscriptions, emulator.Subscription{Name: s, Topic: "t"})
	}
	srv, err := emulator.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// publish publishes n messages numbered from start, with attributes and ordering keys,
// and returns them by message id.
func publish(t testing.TB, srv *emulator.Server, start, n int) map[string]*pb.PubsubMessage {
	t.Helper()
	out := map[string]*pb.PubsubMessage{}
	for lo := start; lo < start+n; lo += 1000 {
		var msgs, copies []*pb.PubsubMessage
		for i := lo; i < min(start+n, lo+1000); i++ {
			data := bytes.Repeat([]byte{byte(i), byte(i >> 8), 0xFF}, i%97)
			m := &pb.PubsubMessage{Data: data, Attributes: map[string]string{"i": strconv.Itoa(i)}}
			if i%3 != 0 {
				m.OrderingKey = "key-" + strconv.Itoa(i%50)
			}
			if i%5 == 0 {
				m.Attributes["five"] = "ü" + strings.Repeat("x", i%7)
			}
			msgs = append(msgs, m)
			copies = append(copies, &pb.PubsubMessage{Data: bytes.Clone(data), Attributes: maps.Clone(m.Attributes), OrderingKey: m.OrderingKey})
		}
		ids, err := srv.Publish(context.Background(), "t", msgs...)
		if err != nil {
			t.Fatal(err)
		}
		for i, id := range ids {
			out[id] = copies[i]
		}
	}
	return out
}

// checkMessage compares a decoded row with what was published.
func checkMessage(t testing.TB, got testreader.Message, want *pb.PubsubMessage) {
	t.Helper()
	if want == nil {
		t.Fatalf("message %q was never published", got.ID)
	}
	if !bytes.Equal(got.Data, want.Data) {
		t.Fatalf("message %q: data %x, want %x", got.ID, got.Data, want.Data)
	}
	if !maps.Equal(got.Attributes, want.Attributes) && !(len(got.Attributes) == 0 && len(want.Attributes) == 0) {
		t.Fatalf("message %q: attributes %v, want %v", got.ID, got.Attributes, want.Attributes)
	}
	if got.OrderingKey != want.OrderingKey || got.HasOrderingKey != (want.OrderingKey != "") {
		t.Fatalf("message %q: ordering key %q (present %v), want %q", got.ID, got.OrderingKey, got.HasOrderingKey, want.OrderingKey)
	}
	if got.PublishTimeUs <= 0 {
		t.Fatalf("message %q: publish time %d", got.ID, got.PublishTimeUs)
	}
}

// running is an in-process pullerd.
type running struct {
	sock, metrics string
	cancel        context.CancelFunc
	done          chan error
}

// startDaemon runs pullerd in-process until stop (or the end of the test).
func startDaemon(t testing.TB, cfg Config) *running {
	t.Helper()
	if cfg.Log == nil {
		cfg.Log = zaptest.NewLogger(t).Named("pullerd")
	}
	if cfg.Stagger == 0 {
		cfg.Stagger = -1
	}
	ready := make(chan [2]string, 1)
	cfg.Ready = func(sock, metrics string) { ready <- [2]string{sock, metrics} }
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- Run(ctx, cfg) }()
	select {
	case a := <-ready:
		r.sock, r.metrics = a[0], a[1]
	case err := <-r.done:
		cancel()
		t.Fatalf("pullerd did not start: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("pullerd did not start within 20 s")
	}
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop shuts pullerd down and checks it returned nil.
func (r *running) stop(t testing.TB) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("pullerd returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("pullerd did not stop within 30 s")
	}
}

// metric scrapes the metrics endpoint and returns the sum of the samples of name.
func metric(t testing.TB, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? ([0-9.e+-]+)$`)
	var sum float64
	for _, m := range re.FindAllStringSubmatch(string(body), -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		sum += v
	}
	return sum
}

// ctlReq sends one request line to a control socket and decodes the answer.
func ctlReq(t testing.TB, sock string, req string) Response {
	t.Helper()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintln(conn, req); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		t.Fatal(err)
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		t.Fatalf("answer %q: %v", line, err)
	}
	return resp
}

// consumer reads a ring set with a testreader and commits batches, keeping what it saw.
type consumer struct {
	t    testing.TB
	set  *testreader.Set
	want map[string]*pb.PubsubMessage

	mu       sync.Mutex
	seen     map[string]int // message id -> times read
	held     []testreader.Batch
	batches  int
	rows     int
	hold     func(b testreader.Batch) bool // true: do not commit yet
	noCommit bool
}

func newConsumer(t testing.TB, dir string, partitions int, want map[string]*pb.PubsubMessage) *consumer {
	t.Helper()
	set, err := testreader.Open(dir, partitions, want != nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.Close)
	return &consumer{t: t, set: set, want: want, seen: map[string]int{}}
}

// pollOnce polls every partition once; it returns the batches read.
func (c *consumer) pollOnce() int {
	n := 0
	for p := range c.set.Partitions() {
		b, ok, err := c.set.Poll(p)
		if err != nil {
			c.t.Fatal(err)
		}
		if !ok {
			continue
		}
		n++
		c.mu.Lock()
		c.batches++
		c.rows += b.Rows
		for _, m := range b.Messages {
			checkMessage(c.t, m, c.want[m.ID])
			c.seen[m.ID]++
		}
		hold := c.noCommit || (c.hold != nil && c.hold(b))
		if hold {
			c.held = append(c.held, b)
		}
		c.mu.Unlock()
		if !hold {
			if err := c.set.Commit(p, b.InstanceID, b.BatchID, b.BatchID); err != nil {
				c.t.Fatal(err)
			}
		}
	}
	return n
}

// until polls until cond holds or the timeout passes.
func (c *consumer) until(timeout time.Duration, what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		if c.pollOnce() == 0 {
			time.Sleep(time.Millisecond)
		}
	}
}

func (c *consumer) distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

// commitHeld commits the batches held back.
func (c *consumer) commitHeld() {
	c.mu.Lock()
	held := c.held
	c.held = nil
	c.mu.Unlock()
	for _, b := range held {
		if err := c.set.Commit(b.Partition, b.InstanceID, b.BatchID, b.BatchID); err != nil {
			c.t.Fatal(err)
		}
	}
}

// ackCounts returns, over the emulator's messages, how many have 0, 1 and more acks.
func ackCounts(srv *emulator.Server) (zero, one, more int) {
	for _, m := range srv.Messages() {
		switch {
		case m.Acks == 0:
			zero++
		case m.Acks == 1:
			one++
		default:
			more++
		}
	}
	return
}

// waitAcked waits until every published message has exactly one ack.
func waitAcked(t testing.TB, srv *emulator.Server, n int, timeout time.Duration, poll func()) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		zero, one, more := ackCounts(srv)
		if more > 0 {
			t.Fatalf("%d messages acked more than once", more)
		}
		if one == n && zero == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %d messages acked once, %d not acked (want %d acked)", timeout, one, zero, n)
		}
		if poll != nil {
			poll()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// setDir returns the ring set directory of subscription s under root.
func setDir(root, s string) string { return filepath.Join(root, project+"."+s) }

// assertEmpty fails if root holds anything.
func assertEmpty(t testing.TB, root string) {
	t.Helper()
	ents, err := os.ReadDir(root)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) > 0 {
		t.Fatalf("pullerd left %v in %s", names, root)
	}
}
