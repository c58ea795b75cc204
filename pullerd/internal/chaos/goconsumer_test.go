package chaos

import (
	"hash/crc32"
	"testing"
	"time"

	"github.com/pubsub-shm/pubsub-shm/pullerd/internal/testreader"
)

// goConsumer reads a ring set with the Go test reader (the JVM reader's protocol in Go),
// checks every row against what was published and commits every batch it reads.
type goConsumer struct {
	set  *testreader.Set
	seen map[string]int
	rows []testreader.Message
}

func newGoConsumer(t testing.TB, dir string, partitions int) *goConsumer {
	t.Helper()
	set, err := testreader.Open(dir, partitions, true)
	if err != nil {
		t.Fatal(err)
	}
	return &goConsumer{set: set, seen: map[string]int{}}
}

// pollOnce polls every partition once, commits what it read, and returns the batches.
func (c *goConsumer) pollOnce(t testing.TB) int {
	t.Helper()
	n := 0
	for p := range c.set.Partitions() {
		b, ok, err := c.set.Poll(p)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			continue
		}
		n++
		for _, m := range b.Messages {
			c.seen[m.ID]++
			c.rows = append(c.rows, m)
		}
		if err := c.set.Commit(p, b.InstanceID, b.BatchID, b.BatchID); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// readAll polls until every published message was read once, checking data and
// attributes against what was published.
func (c *goConsumer) readAll(t testing.TB, published map[string]sent, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		missing := 0
		for id := range published {
			if c.seen[id] == 0 {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages not read within %v", missing, len(published), timeout)
		}
		if c.pollOnce(t) == 0 {
			time.Sleep(2 * time.Millisecond)
		}
	}
	for _, m := range c.rows {
		want, ok := published[m.ID]
		if !ok {
			t.Fatalf("read message %q that was never published", m.ID)
		}
		if crc32.ChecksumIEEE(m.Data) != want.crc || len(m.Data) != want.size || len(m.Attributes) != want.attrs || attrDigest(m.Attributes) != want.attrsCRC {
			t.Fatalf("message %s: %d bytes, %d attributes; not what was published (%+v)", m.ID, len(m.Data), len(m.Attributes), want)
		}
	}
}

func (c *goConsumer) close() { c.set.Close() }
