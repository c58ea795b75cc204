//go:build crossproc

package chaos

import (
	"context"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pubsub-shm/pubsub-shm/pullerd/emulator"
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
	w.finish(pub, 3*time.Minute, 0.5, "")
}

// TestCrossProcessSparkKilledDefaultOptions: the same crash with the default
// failOnDataLoss=true. The restarted query replays the micro-batch planned before the
// crash, whose rings pullerd has recreated meanwhile (their messages nacked, so nothing is
// lost): it must stop with a message that names the recreated ring and the option that
// lets it continue, and a restart with failOnDataLoss=false from the same checkpoint must
// then deliver everything.
func TestCrossProcessSparkKilledDefaultOptions(t *testing.T) {
	w := newWorld(t, worldOptions{sparkArgs: []string{"--batch-delay-ms", "1000"}})
	w.startPullerd()
	w.startSpark()
	w.startChecker()
	pub := startPublisher(w.srv, 1000, 15000, nil)
	w.sparkBatchStart(3, 2*time.Minute)
	time.Sleep(300 * time.Millisecond)
	w.spark.kill()
	time.Sleep(5 * time.Second) // past pullerd's reader timeout and grace (2 s + 2 s)
	w.startSpark()
	// Either the query fails, or it completes a micro-batch with rows (it recovered).
	l, _, err := w.spark.nextLine(0, 2*time.Minute, func(l string) bool {
		failed := strings.HasPrefix(l, "chaos: query failed")
		read := strings.HasPrefix(l, "chaos: batch ") && strings.Contains(l, " done ") && !strings.HasSuffix(l, " done 0")
		return failed || read
	})
	if err != nil {
		t.Fatalf("the restarted query neither failed nor completed a micro-batch: %v", err)
	}
	if strings.HasPrefix(l, "chaos: query failed") {
		for _, want := range []string{"was recreated", "failOnDataLoss=false", "data-"} {
			if !strings.Contains(l, want) {
				t.Errorf("the failure does not say %q: %s", want, l)
			}
		}
		t.Logf("restarted query stopped as documented: %.300s...", l)
		<-w.spark.done
		w.sparkArgs = append(w.sparkArgs, "--fail-on-data-loss", "false")
		w.startSpark()
	} else {
		t.Logf("the restarted query recovered on its own: %s", l)
	}
	w.finish(pub, 3*time.Minute, 0.5, "")
}

// TestCrossProcessPullerdKilledUnderSpark: pullerd is killed with SIGKILL while the Spark
// query reads a micro-batch, and restarted. The new pullerd recreates the rings (new
// instance ids); the query goes on with the new rings without a restart; what the killed
// pullerd held (its leases lapse after the ack deadline) is redelivered. Nothing is lost,
// nothing acked before commit; the duplicates are what the dead pullerd had delivered but
// not acked.
func TestCrossProcessPullerdKilledUnderSpark(t *testing.T) {
	w := newWorld(t, worldOptions{sparkArgs: []string{"--batch-delay-ms", "500", "--fail-on-data-loss", "false"}})
	w.startPullerd()
	w.startSpark()
	w.startChecker()
	pub := startPublisher(w.srv, 1000, 20000, nil)
	id := w.sparkBatchStart(3, 2*time.Minute)
	time.Sleep(time.Duration(rand.IntN(500)) * time.Millisecond)
	w.pd.kill()
	t.Logf("killed pullerd during micro-batch %d after %d published", id, pub.count())
	time.Sleep(time.Second)
	w.startPullerd()
	w.finish(pub, 3*time.Minute, 0.5, "the query did not survive a pullerd restart")
}

// TestCrossProcessEmulatorRestartUnderLoad: the Pub/Sub emulator goes away for 3 s twice
// while messages flow (streams and acks fail with UNAVAILABLE, connections are cut);
// pullerd reopens its streams with back-off and retries its acks. Nothing is lost, nothing
// acked before commit, the query never notices.
func TestCrossProcessEmulatorRestartUnderLoad(t *testing.T) {
	w := newWorld(t, worldOptions{})
	w.startPullerd()
	w.startSpark()
	w.startChecker()
	pub := startPublisher(w.srv, 1000, 25000, nil)
	for range 2 {
		time.Sleep(4 * time.Second)
		if err := w.srv.Restart(context.Background(), emulator.RestartOptions{Downtime: 3 * time.Second}); err != nil {
			t.Fatal(err)
		}
		t.Logf("emulator restarted (3 s down) after %d published", pub.count())
	}
	if pub.count() >= 25000 {
		t.Error("the emulator restarts came after the traffic; the test proves nothing")
	}
	w.finish(pub, 3*time.Minute, 0.2, "the query did not survive the emulator restarts")
}

// TestCrossProcessSparkFrozen: the Spark JVM stops (SIGSTOP: a stuck machine or a very long
// GC pause) for longer than pullerd's reader timeout and grace period, then goes on
// (SIGCONT). pullerd declares the reader dead, nacks what it had not committed and recreates
// the rings; the thawed query finds its planned batches gone (skipped with
// failOnDataLoss=false), reads the redelivered messages from the new rings, and everything
// arrives, nothing acked before commit. Its commits for the old rings are stale and
// ignored.
func TestCrossProcessSparkFrozen(t *testing.T) {
	w := newWorld(t, worldOptions{sparkArgs: []string{"--batch-delay-ms", "500", "--fail-on-data-loss", "false"}})
	w.startPullerd()
	w.startSpark()
	w.startChecker()
	pub := startPublisher(w.srv, 1000, 20000, nil)
	w.sparkBatchStart(3, 2*time.Minute)
	if err := w.spark.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(8 * time.Second) // reader timeout 2 s + grace 2 s, with room
	recreated := metricValue(t, w.pd.metricsAddr(t), "pullerd_rings_recreated_total")
	if err := w.spark.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	t.Logf("Spark frozen 8 s after %d published; pullerd recreated %v rings meanwhile", pub.count(), recreated)
	if recreated == 0 {
		t.Error("pullerd did not declare the frozen reader dead")
	}
	w.finish(pub, 3*time.Minute, 0.5, "the thawed query stopped")
}
