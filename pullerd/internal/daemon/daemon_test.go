package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/pubsub-shm/pubsub-shm/pullerd/internal/testreader"
	"github.com/pubsub-shm/pubsub-shm/ringbuf/arrowbatch"
)

// testConfig is a small pullerd on root for subscriptions subs.
func testConfig(root string, srv interface{ Addr() string }, subs ...string) Config {
	cfg := Config{
		Dir:          root,
		Partitions:   3,
		Streams:      2,
		RingCapacity: 1 << 20,
		Batch:        arrowbatch.Policy{MaxRows: 500, MaxBytes: 64 << 10, Linger: 2 * time.Millisecond},
		AckDeadline:  10 * time.Second,
	}
	for _, s := range subs {
		cfg.Subscriptions = append(cfg.Subscriptions, Sub{Project: project, Subscription: s})
	}
	return cfg
}

// TestPipe: messages go through the rings, are acked only once committed, and their leases
// are extended while commits are held back past the ack deadline.
func TestPipe(t *testing.T) {
	root := shmRoot(t)
	srv := newEmulator(t, 10*time.Second)
	want := publish(t, srv, 0, 20000)
	cfg := testConfig(root, srv, "sub")
	cfg.ClientOptions = srv.ClientOptions()
	cfg.AckDeadline = 10 * time.Second // Pub/Sub's minimum; the lease loop must extend it
	d := startDaemon(t, cfg)

	c := newConsumer(t, setDir(root, "sub"), 3, want)
	c.hold = func(b testreader.Batch) bool { return b.BatchID%4 == 0 }
	c.until(30*time.Second, "every message read", func() bool { return c.distinct() == len(want) })
	heldIDs := map[string]bool{}
	// Let ackd settle the commits, then hold on past the 10 s ack deadline.
	time.Sleep(12 * time.Second)
	c.mu.Lock()
	nHeld := len(c.held)
	c.mu.Unlock()
	if nHeld == 0 {
		t.Fatal("no batch was held back; the test proves nothing")
	}
	zero, one, more := ackCounts(srv)
	if more != 0 {
		t.Fatalf("%d messages acked more than once", more)
	}
	var heldRows int
	for _, b := range c.held {
		heldRows += b.Rows
		for _, m := range b.Messages {
			heldIDs[m.ID] = true
		}
	}
	if zero != heldRows || one != len(want)-heldRows {
		redelivered := 0
		for _, m := range srv.Messages() {
			if m.Deliveries > 1 {
				redelivered++
			}
		}
		t.Logf("unknown batches %v, retries %v, ack failures %v, redelivered %d, read %d rows", metric(t, d.metrics, "pullerd_unknown_batch_commits_total"),
			metric(t, d.metrics, "pullerd_ack_retries_total"), metric(t, d.metrics, "pullerd_ack_failures_total"), redelivered, c.rows)
		t.Fatalf("before the held commits: %d acked, %d not; want %d not acked (the held batches)", one, zero, heldRows)
	}
	for _, m := range srv.Messages() {
		if heldIDs[m.ID] && m.Acks != 0 {
			t.Fatalf("message %s acked before its batch was committed", m.ID)
		}
		if m.Deliveries != 1 {
			t.Fatalf("message %s delivered %d times: its lease was not extended", m.ID, m.Deliveries)
		}
	}
	if got := metric(t, d.metrics, "pullerd_lease_extensions_total"); got < float64(heldRows) {
		t.Fatalf("lease extensions %v, want at least the %d held messages", got, heldRows)
	}
	if got := metric(t, d.metrics, "pullerd_num_unacked_messages"); got != float64(heldRows) {
		t.Errorf("num_unacked_messages %v, want %d", got, heldRows)
	}
	st := ctlReq(t, d.sock, `{"op":"status","project":"`+project+`","subscription":"sub"}`)
	if !st.OK || st.RingSet.HeldMessages != int64(heldRows) || len(st.RingSet.Partitions) != 3 {
		t.Fatalf("status %+v", st)
	}
	c.commitHeld()
	waitAcked(t, srv, len(want), 20*time.Second, nil)
	for id, n := range c.seen {
		if n != 1 {
			t.Fatalf("message %s read %d times", id, n)
		}
	}
	if got := metric(t, d.metrics, "pullerd_acks_sent_total"); got != float64(len(want)) {
		t.Errorf("acks sent %v, want %d", got, len(want))
	}
	if got := metric(t, d.metrics, "pullerd_ack_latency_seconds_count"); got == 0 {
		t.Error("no ack latency observed")
	}
	d.stop(t)
	assertEmpty(t, root)
}

// TestFaults: RESOURCE_EXHAUSTED and UNAVAILABLE on StreamingPull and Acknowledge, and
// streams closed by the server; nothing is lost and nothing is acked twice.
func TestFaults(t *testing.T) {
	root := shmRoot(t)
	srv := newEmulator(t, 10*time.Second)
	srv.FailNextStreams(3, codes.ResourceExhausted, "injected quota")
	srv.FailNextStreams(2, codes.Unavailable, "injected outage")
	srv.SetStreamTimeout(300 * time.Millisecond)
	if err := srv.InjectUnaryError("Acknowledge", codes.Unavailable, "injected ack outage", 3); err != nil {
		t.Fatal(err)
	}
	want := publish(t, srv, 0, 10000)
	cfg := testConfig(root, srv, "sub")
	cfg.ClientOptions = srv.ClientOptions()
	d := startDaemon(t, cfg)
	c := newConsumer(t, setDir(root, "sub"), 3, want)
	c.until(30*time.Second, "half the messages read", func() bool { return c.distinct() >= len(want)/2 })
	if n := srv.CloseStreams(codes.OK, ""); n == 0 {
		t.Log("no stream open at the moment of CloseStreams")
	}
	if err := srv.InjectUnaryError("Acknowledge", codes.ResourceExhausted, "injected ack quota", 2); err != nil {
		t.Fatal(err)
	}
	c.until(30*time.Second, "every message read", func() bool { return c.distinct() == len(want) })
	waitAcked(t, srv, len(want), 30*time.Second, func() { c.pollOnce() })
	if got := metric(t, d.metrics, "pullerd_resource_exhausted_total"); got < 3 {
		t.Errorf("resource exhausted count %v, want >= 3", got)
	}
	if got := metric(t, d.metrics, "pullerd_stream_reopens_total"); got < 6 {
		t.Errorf("stream reopens %v, want >= 6 (5 failed opens and a server close)", got)
	}
	if got := metric(t, d.metrics, "pullerd_ack_retries_total"); got < 5 {
		t.Errorf("ack retries %v, want >= 5", got)
	}
	if st := srv.Stats(); st.StreamsFailedOnOpen != 5 {
		t.Errorf("emulator failed %d stream opens, want 5", st.StreamsFailedOnOpen)
	}
	d.stop(t)
	assertEmpty(t, root)
}

// TestReaderDeath: a reader that stops heart-beating mid-stream has its uncommitted
// batches nacked after the grace period (long before their lease ends) and its ring
// recreated; the old reader gets ErrRecreated, a new reader gets everything, nothing is
// lost or acked twice.
func TestReaderDeath(t *testing.T) {
	root := shmRoot(t)
	srv := newEmulator(t, 10*time.Second)
	want := publish(t, srv, 0, 6000)
	cfg := testConfig(root, srv, "sub")
	cfg.ClientOptions = srv.ClientOptions()
	cfg.AckDeadline = 60 * time.Second // redelivery within the test proves the nack
	cfg.ReaderTimeout = 300 * time.Millisecond
	cfg.ReaderGrace = 300 * time.Millisecond
	d := startDaemon(t, cfg)
	dir := setDir(root, "sub")

	a := newConsumer(t, dir, 3, want)
	a.hold = func(b testreader.Batch) bool { return b.BatchID > 2 } // commit only the first two of each ring
	a.until(20*time.Second, "a third of the messages read", func() bool { return a.distinct() >= len(want)/3 })
	old := []uint64{a.set.InstanceID(0), a.set.InstanceID(1), a.set.InstanceID(2)}
	a.set.StopHeartbeat() // hangs: no more heartbeats, no more polls

	deadline := time.Now().Add(10 * time.Second)
	for p := 0; p < 3; p++ {
		for {
			err := a.set.Check(p, time.Second)
			if errors.Is(err, testreader.ErrRecreated) {
				if !strings.Contains(err.Error(), "instance id") {
					t.Fatalf("unclear error: %v", err)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("partition %d not recreated 10 s after the reader died (last check: %v)", p, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	b := newConsumer(t, dir, 3, want)
	for p := range 3 {
		if b.set.InstanceID(p) == old[p] {
			t.Fatalf("partition %d kept instance id %d", p, old[p])
		}
	}
	if committedRows(a) == 0 || len(a.held) == 0 {
		t.Fatal("the dead reader committed nothing or held nothing back; the test proves nothing")
	}
	waitAcked(t, srv, len(want), 20*time.Second, func() { b.pollOnce() })
	if got := metric(t, d.metrics, "pullerd_rings_recreated_total"); got < 1 {
		t.Errorf("rings recreated %v", got)
	}
	if got := metric(t, d.metrics, "pullerd_nacks_sent_total"); got < 1 {
		t.Errorf("nacks sent %v, want the dead reader's uncommitted messages", got)
	}
	d.stop(t)
	assertEmpty(t, root)
}

func committedRows(c *consumer) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.rows
	for _, b := range c.held {
		n -= b.Rows
	}
	return n
}

// TestUnknownCommits: commits for unknown batch ids, a stale instance id and a missing
// partition are logged and counted; pullerd keeps working.
func TestUnknownCommits(t *testing.T) {
	root := shmRoot(t)
	srv := newEmulator(t, 10*time.Second)
	cfg := testConfig(root, srv, "sub")
	cfg.ClientOptions = srv.ClientOptions()
	d := startDaemon(t, cfg)
	c := newConsumer(t, setDir(root, "sub"), 3, nil)
	inst := c.set.InstanceID(1)
	if err := c.set.Commit(1, inst, 999, 1001); err != nil {
		t.Fatal(err)
	}
	if err := c.set.Commit(1, inst^1, 1, 1); err != nil {
		t.Fatal(err)
	}
	if err := c.set.Nack(7, inst, 1, 1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for metric(t, d.metrics, "pullerd_unknown_batch_commits_total") < 4 || metric(t, d.metrics, "pullerd_stale_commits_total") < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("unknown %v, stale %v", metric(t, d.metrics, "pullerd_unknown_batch_commits_total"), metric(t, d.metrics, "pullerd_stale_commits_total"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	want := publish(t, srv, 0, 500)
	c.until(20*time.Second, "messages read", func() bool { return c.rows == len(want) })
	waitAcked(t, srv, len(want), 20*time.Second, nil)
	d.stop(t)
	assertEmpty(t, root)
}

// TestBackpressure: with commits held back, pullerd holds at most the outstanding bound,
// and asks the server for no more.
func TestBackpressure(t *testing.T) {
	root := shmRoot(t)
	srv := newEmulator(t, 10*time.Second)
	want := publish(t, srv, 0, 5000)
	cfg := testConfig(root, srv, "sub")
	cfg.ClientOptions = srv.ClientOptions()
	cfg.MaxOutstandingMessages = 600
	d := startDaemon(t, cfg)
	c := newConsumer(t, setDir(root, "sub"), 3, want)
	c.noCommit = true
	c.until(20*time.Second, "the bound reached", func() bool { return c.distinct() >= 600 })
	time.Sleep(500 * time.Millisecond)
	c.pollOnce()
	if n := c.distinct(); n > 600 {
		t.Fatalf("read %d messages with a bound of 600", n)
	}
	if sent := srv.Stats().MessagesSent; sent > 600 {
		t.Fatalf("the emulator sent %d messages with a bound of 600 (max_outstanding_messages not sent?)", sent)
	}
	if got := metric(t, d.metrics, "pullerd_held_messages"); got > 600 {
		t.Fatalf("held %v", got)
	}
	c.noCommit = false
	c.commitHeld()
	c.until(30*time.Second, "every message read", func() bool { return c.distinct() == len(want) })
	waitAcked(t, srv, len(want), 20*time.Second, func() { c.pollOnce() })
	d.stop(t)
	assertEmpty(t, root)
}

// TestControl: attach at run time, status, permissions, and refusals of bad requests.
func TestControl(t *testing.T) {
	root := shmRoot(t)
	srv := newEmulator(t, 10*time.Second, "sub2")
	cfg := testConfig(root, srv, "sub")
	cfg.ClientOptions = srv.ClientOptions()
	d := startDaemon(t, cfg)

	resp := ctlReq(t, d.sock, `{"op":"attach","project":"`+project+`","subscription":"sub2","partitions":2}`)
	if !resp.OK || resp.RingSet == nil || len(resp.RingSet.Partitions) != 2 || resp.RingSet.Dir != setDir(root, "sub2") {
		t.Fatalf("attach: %+v", resp)
	}
	for _, f := range []string{"data-0.ring", "data-1.ring", "commit.ring", "control.sock"} {
		fi, err := os.Stat(filepath.Join(setDir(root, "sub2"), f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	if fi, _ := os.Stat(setDir(root, "sub2")); fi.Mode().Perm() != 0o700 {
		t.Errorf("ring set dir mode %v", fi.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(setDir(root, "sub2"), "data-2.ring")); err == nil {
		t.Error("data-2.ring exists with 2 partitions")
	}
	// Idempotent, and the ring set's own socket defaults to its subscription.
	if r := ctlReq(t, d.sock, `{"op":"attach","subscription":"projects/`+project+`/subscriptions/sub2"}`); !r.OK {
		t.Fatalf("re-attach: %+v", r)
	}
	r := ctlReq(t, filepath.Join(setDir(root, "sub2"), "control.sock"), `{"op":"status"}`)
	if !r.OK || r.RingSet == nil || r.RingSet.Subscription != "sub2" || r.RingSet.MetricsAddr != d.metrics {
		t.Fatalf("set status: %+v", r)
	}
	if r := ctlReq(t, d.sock, `{"op":"status"}`); !r.OK || len(r.RingSets) != 2 {
		t.Fatalf("status: %+v", r)
	}
	addr, err := os.ReadFile(filepath.Join(setDir(root, "sub"), "metrics.addr"))
	if err != nil || strings.TrimSpace(string(addr)) != d.metrics {
		t.Fatalf("metrics.addr %q, %v; want %s", addr, err, d.metrics)
	}
	for req, wantErr := range map[string]string{
		`not json`:                  "bad request",
		`{"op":"status","bogus":1}`: "unknown field",
		`{"op":"frobnicate"}`:       `unknown op "frobnicate"`,
		`{}`:                        "no op",
		`{"op":"attach"}`:           "needs a subscription",
		`{"op":"attach","project":"p","subscription":"../x"}`:                               "subscription id",
		`{"op":"attach","project":"P!","subscription":"sub"}`:                               "project",
		`{"op":"attach","project":"` + project + `","subscription":"sub2","partitions":5}`:  "already attached with 2 partitions",
		`{"op":"attach","project":"` + project + `","subscription":"sub2","partitions":-1}`: "partitions=-1",
		`{"op":"status","project":"` + project + `","subscription":"nope"}`:                 "not attached",
	} {
		r := ctlReq(t, d.sock, req)
		if r.OK || !strings.Contains(r.Error, wantErr) {
			t.Errorf("%s: got %+v, want an error containing %q", req, r, wantErr)
		}
	}
	want := publish(t, srv, 0, 300)
	c := newConsumer(t, setDir(root, "sub2"), 2, want)
	c.until(20*time.Second, "s2 read", func() bool { return c.distinct() == len(want) })
	d.stop(t)
	assertEmpty(t, root)
}

// TestSecondPullerdRefused: a second pullerd on the same root refuses to start.
func TestSecondPullerdRefused(t *testing.T) {
	root := shmRoot(t)
	srv := newEmulator(t, 10*time.Second)
	cfg := testConfig(root, srv, "sub")
	cfg.ClientOptions = srv.ClientOptions()
	d := startDaemon(t, cfg)
	cfg2 := cfg
	cfg2.Log = nil
	err := Run(t.Context(), cfg2)
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("second pullerd: %v, want ErrInUse", err)
	}
	if _, err := os.Stat(filepath.Join(setDir(root, "sub"), "commit.ring")); err != nil {
		t.Fatalf("the second pullerd damaged the first one's ring set: %v", err)
	}
	d.stop(t)
	assertEmpty(t, root)
}

// TestConfig checks defaults and refusals.
func TestConfig(t *testing.T) {
	c, err := Config{Streams: 50, Partitions: 40, StreamBudget: 100, Hosts: 10}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if got := c.streamsFor(40); got != 10 {
		t.Errorf("streams = %d, want budget/hosts = 10", got)
	}
	if got := c.streamsFor(4); got != 4 {
		t.Errorf("streams = %d, want partitions = 4", got)
	}
	if c.MaxOutstandingBytes != 40*DefaultRingCapacity*3/4 {
		t.Errorf("max outstanding bytes %d", c.MaxOutstandingBytes)
	}
	for _, bad := range []Config{
		{MetricsAddr: "0.0.0.0:9090"},
		{MetricsAddr: ":9090"},
		{RingCapacity: 3 << 20},
		{AckDeadline: 1500 * time.Millisecond},
		{StreamBudget: 5, Hosts: 10},
		{Partitions: MaxPartitions + 1},
		{Subscriptions: []Sub{{Project: "p", Subscription: "goog-x"}}},
	} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if _, err := (Config{MetricsAddr: ":9090"}).withDefaults(); err == nil || !strings.Contains(err.Error(), "-metrics-remote") {
		t.Errorf("a non-loopback metrics address: %v, want an error that names -metrics-remote", err)
	}
	if c, err := (Config{MetricsAddr: ":9090", MetricsRemote: true}).withDefaults(); err != nil || c.MetricsAddr != ":9090" {
		t.Errorf("-metrics-remote with :9090: %v", err)
	}
	if _, err := (Config{MetricsAddr: "9090", MetricsRemote: true}).withDefaults(); err == nil {
		t.Error("-metrics-remote accepted a metrics address without a port")
	}
	if _, err := ParseSub("projects/p/topics/t", ""); err == nil {
		t.Error("a topic name accepted as a subscription")
	}
	if s, err := ParseSub("projects/my-proj/subscriptions/sub-1", ""); err != nil || s.SetName() != "my-proj.sub-1" {
		t.Errorf("ParseSub: %+v %v", s, err)
	}
}
