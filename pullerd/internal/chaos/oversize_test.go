package chaos

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
)

// TestOversizedMessageDoesNotWedgeThePipe: a message larger than the ring can ever hold
// (700 KB with a 1 MiB ring: records are at most 512 KiB) among ordinary ones. pullerd
// leaves it out with an error naming the fix, and everything else flows: read once, acked
// once, the ring never recreated. The big message stays unacked (Pub/Sub redelivers it
// after its ack deadline, or dead-letters it), and is not redelivered in a hot loop.
// (Before the fix, writing it failed, the ring was recreated and everything nacked, over
// and over: each message was delivered ~340 times a second and nothing was read.)
func TestOversizedMessageDoesNotWedgeThePipe(t *testing.T) {
	root := shmRoot(t)
	srv := newEmulator(t, 10*time.Second, "sub")
	pd := startPullerd(t, srv, root, t.TempDir(), "-subscription", "sub", "-partitions", "1", "-streams", "1",
		"-ring-capacity", "1048576", "-ack-deadline", "10s")
	metrics := pd.metricsAddr(t)
	c := newGoConsumer(t, filepath.Join(root, project+".sub"), 1)
	defer c.close()
	instance := c.set.InstanceID(0)
	var small []string
	for i := range 300 {
		m := &pb.PubsubMessage{Data: []byte{byte(i)}}
		if i == 150 {
			ids, err := srv.Publish(t.Context(), topic, &pb.PubsubMessage{Data: bytes.Repeat([]byte{7}, 700_000)})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("oversized message %s", ids[0])
		}
		ids, err := srv.Publish(t.Context(), topic, m)
		if err != nil {
			t.Fatal(err)
		}
		small = append(small, ids[0])
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		missing := 0
		for _, id := range small {
			if c.seen[id] == 0 {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d ordinary messages not read in 30 s next to an oversized one", missing, len(small))
		}
		if c.pollOnce(t) == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	time.Sleep(2 * time.Second) // acks settle; a hot redelivery loop would show by now
	c.pollOnce(t)
	for id, k := range c.seen {
		if k != 1 {
			t.Errorf("message %s read %d times", id, k)
		}
	}
	acked, multi := ackState(srv)
	for _, id := range small {
		if acked[id] != 1 {
			t.Errorf("message %s acked %d times", id, acked[id])
		}
	}
	if multi > 0 {
		t.Errorf("%d messages acked more than once", multi)
	}
	for _, m := range srv.Messages() {
		if len(m.Data) == 700_000 {
			if m.Acks != 0 || m.Deliveries > 2 {
				t.Errorf("the oversized message: %d deliveries, %d acks; want no ack and no redelivery loop", m.Deliveries, m.Acks)
			}
		}
	}
	if c.set.InstanceID(0) != instance || metricValue(t, metrics, "pullerd_rings_recreated_total") != 0 {
		t.Errorf("the ring was recreated (%v times) because of one oversized message", metricValue(t, metrics, "pullerd_rings_recreated_total"))
	}
	if err := pd.term(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	if log := tailFile(pd.logPath, 1000); !strings.Contains(log, "message too large for the ring") || !strings.Contains(log, "raise -ring-capacity") {
		t.Errorf("pullerd did not log a clear error for the oversized message")
	}
}
