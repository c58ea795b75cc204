//go:build crossproc

package chaos

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestCrossProcessSparkKilledMidBatch: the Spark JVM (driver and executor, local mode) is
// killed with SIGKILL while a micro-batch runs, and restarted from its checkpoint. pullerd
// sees the reader die, nacks what it had not committed after the grace period and
// recreates the rings; the restarted query (failOnDataLoss=false) skips the planned
// batches of the old rings and reads the redelivered messages. Every published message
// reaches the sink at least once, none is acked before its micro-batch is committed.
func TestCrossProcessSparkKilledMidBatch(t *testing.T) {
	w := newWorld(t, worldOptions{sparkArgs: []string{"--batch-delay-ms", "1000", "--fail-on-data-loss", "false"}})
	w.startPullerd()
	w.startSpark()
	w.startChecker()
	pub := startPublisher(w.srv, 1000, 20000, nil)
	id := w.sparkBatchStart(3, 2*time.Minute)
	time.Sleep(time.Duration(rand.IntN(1200)) * time.Millisecond)
	w.spark.kill()
	t.Logf("killed Spark during micro-batch %d after %d published", id, pub.count())
	w.startSpark()
	published := pub.Wait()
	r := w.drain(published, 3*time.Minute)
	w.stopChecker()
	w.requireExact(r, 0.5)
	w.stopSpark()
	w.stopPullerd()
}
