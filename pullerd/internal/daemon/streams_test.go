package daemon

import (
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
)

// TestStreamsResize: attach with streams=1 opens one StreamingPull stream; a re-attach
// with 3 opens 3 (no more than pullerd's own number), the same number again is a no-op,
// and 1 retires two streams while messages are in flight. Every message is read and acked
// exactly once and delivered once: the retired streams dropped nothing.
func TestStreamsResize(t *testing.T) {
	root := shmRoot(t)
	srv := newEmulator(t, 10*time.Second)
	cfg := testConfig(root, srv) // nothing attached at start
	cfg.ClientOptions = srv.ClientOptions()
	cfg.Streams = 8 // pullerd's own number: min(8, 3 partitions) = 3
	d := startDaemon(t, cfg)
	const sub = "projects/" + project + "/subscriptions/sub"

	attach := func(streams string) *RingSetStatus {
		t.Helper()
		r := ctlReq(t, d.sock, `{"op":"attach","subscription":"`+sub+`"`+streams+`}`)
		if !r.OK || r.RingSet == nil {
			t.Fatalf("attach%s: %+v", streams, r)
		}
		return r.RingSet
	}
	wantStreams := func(st *RingSetStatus, n int) {
		t.Helper()
		if st.Streams != n {
			t.Fatalf("ring set reports %d streams, want %d", st.Streams, n)
		}
		if r := ctlReq(t, d.sock, `{"op":"status","subscription":"`+sub+`"}`); !r.OK || r.RingSet.Streams != n {
			t.Fatalf("status: %+v, want %d streams", r, n)
		}
	}

	wantStreams(attach(`,"streams":1`), 1)
	want := map[string]*pb.PubsubMessage{}
	c := newConsumer(t, setDir(root, "sub"), 3, want)
	open := func(n int) {
		t.Helper()
		c.until(30*time.Second, fmt.Sprintf("%d streams open", n), func() bool { return srv.StreamStats(sub).Open == n })
	}
	readAll := func(start, n int) {
		t.Helper()
		maps.Copy(want, publish(t, srv, start, n))
		c.until(30*time.Second, "every message read", func() bool { return c.distinct() == len(want) })
	}
	open(1)
	readAll(0, 2000)
	if st := srv.StreamStats(sub); st.Open != 1 || st.Peak != 1 || st.Opens != 1 {
		t.Fatalf("streams=1: emulator stream stats %+v, want 1 open, peak 1, 1 opened", st)
	}

	wantStreams(attach(`,"streams":3`), 3)
	open(3)
	readAll(2000, 2000)
	wantStreams(attach(`,"streams":3`), 3) // the same number: no-op
	wantStreams(attach(`,"streams":8`), 3) // more than pullerd's own number: its own number
	wantStreams(attach(``), 3)             // no number: unchanged
	if st := srv.StreamStats(sub); st.Open != 3 || st.Peak != 3 || st.Opens != 3 {
		t.Fatalf("streams=3: emulator stream stats %+v, want 3 open, peak 3, 3 opened", st)
	}

	// Shrink while the streams are delivering.
	maps.Copy(want, publish(t, srv, 4000, 6000))
	wantStreams(attach(`,"streams":1`), 1)
	open(1)
	c.until(30*time.Second, "every message read", func() bool { return c.distinct() == len(want) })
	srv.ResetStreamPeak(sub)
	readAll(10000, 1000)
	waitAcked(t, srv, len(want), 30*time.Second, func() { c.pollOnce() })
	if st := srv.StreamStats(sub); st.Open != 1 || st.Peak != 1 || st.Opens != 3 {
		t.Fatalf("streams=1 again: emulator stream stats %+v, want 1 open, peak 1 since the reset, 3 opened in all", st)
	}
	c.mu.Lock()
	for id, n := range c.seen {
		if n != 1 {
			t.Errorf("message %s read %d times", id, n)
		}
	}
	c.mu.Unlock()
	for _, m := range srv.Messages() {
		if m.Deliveries != 1 {
			t.Errorf("message %s delivered %d times: a retired stream dropped what it was sent", m.ID, m.Deliveries)
		}
	}

	// 0: back to pullerd's own number.
	wantStreams(attach(`,"streams":0`), 3)
	open(3)
	if st := srv.StreamStats(sub); st.Opens != 5 {
		t.Fatalf("streams=0: emulator stream stats %+v, want 5 opened in all", st)
	}

	for req, wantErr := range map[string]string{
		`{"op":"attach","subscription":"` + sub + `","streams":-1}`:   "bad request: streams=-1: want 1..1024, or 0",
		`{"op":"attach","subscription":"` + sub + `","streams":5000}`: "bad request: streams=5000: want 1..1024",
		`{"op":"attach","subscription":"` + sub + `","streams":"2"}`:  "bad request",
		`{"op":"status","subscription":"` + sub + `","streams":2}`:    "streams=2: streams is only for attach",
		`{"op":"attach_topic","topic":"t","streams":2}`:               "not subscription, partitions or streams",
	} {
		r := ctlReq(t, d.sock, req)
		if r.OK || !strings.Contains(r.Error, wantErr) {
			t.Errorf("%s: got %+v, want an error containing %q", req, r, wantErr)
		}
	}
	if r := ctlReq(t, d.sock, `{"op":"status","subscription":"`+sub+`"}`); !r.OK || r.RingSet.Streams != 3 {
		t.Fatalf("refused requests changed the streams: %+v", r)
	}
	d.stop(t)
	assertEmpty(t, root)
}

// TestStreamsWanted checks the streams an attach request gets.
func TestStreamsWanted(t *testing.T) {
	c, err := Config{Streams: 6, Partitions: 8, StreamBudget: 40, Hosts: 10}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ partitions, requested, want int }{
		{8, 0, 4},  // budget/hosts
		{8, 1, 1},  // the request
		{8, 3, 3},  // the request
		{8, 9, 4},  // never more than pullerd's own number
		{2, 0, 2},  // partitions
		{2, 3, 2},  // partitions
		{1, 10, 1}, // partitions
	} {
		if got := c.streamsWanted(tc.partitions, tc.requested); got != tc.want {
			t.Errorf("streamsWanted(%d partitions, %d requested) = %d, want %d", tc.partitions, tc.requested, got, tc.want)
		}
	}
}
