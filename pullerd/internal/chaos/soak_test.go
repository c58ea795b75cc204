//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pubsub-shm/pubsub-shm/pullerd/emulator"
)

// envDuration reads a duration from the environment (default def).
func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return d
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}

// TestChaosSoak: CHAOS_DURATION (default 3m) of traffic at CHAOS_RATE messages/s (default
// 1000) through emulator -> pullerd -> rings -> Spark (file sink), with a random fault
// every 5 to 15 s: the Spark JVM killed with SIGKILL (mid-batch when one runs) and
// restarted from its checkpoint, pullerd killed with SIGKILL and restarted, both killed at
// once, or the emulator restarted. CHAOS_SEED makes a run repeatable. Throughout, every
// acked message must be in the sink (nothing acked before commit); at the end, after the
// traffic stops, every published message must be in the sink and acked, with the
// duplicates counted and bounded: a crash can only duplicate messages that were delivered
// and not yet acked, and pullerd holds at most -max-outstanding-messages of those, so the
// duplicates stay under (crashes x max outstanding). pullerd's RSS is sampled and must stay
// under 512 MiB.
func TestChaosSoak(t *testing.T) {
	duration := envDuration(t, "CHAOS_DURATION", 3*time.Minute)
	rate := envInt(t, "CHAOS_RATE", 1000)
	seed := uint64(envInt(t, "CHAOS_SEED", int(time.Now().UnixNano()%1_000_000)))
	const maxOutstanding = 8000
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	t.Logf("chaos soak: %v at %d msg/s, seed %d (CHAOS_SEED=%d repeats it)", duration, rate, seed, seed)

	w := newWorld(t, worldOptions{
		pullerdArgs: []string{"-max-outstanding-messages", strconv.Itoa(maxOutstanding)},
		sparkArgs:   []string{"--batch-delay-ms", "300", "--fail-on-data-loss", "false"},
	})
	w.startPullerd()
	w.startSpark()
	w.startChecker()
	pub := startPublisher(w.srv, rate, 0, nil)

	// RSS samples of pullerd (per incarnation: first and max) and of the JVM.
	stopRSS := make(chan struct{})
	rssDone := make(chan struct{})
	var pdMax, jvmMax int64
	go func() {
		defer close(rssDone)
		tk := time.NewTicker(2 * time.Second)
		defer tk.Stop()
		for {
			select {
			case <-stopRSS:
				return
			case <-tk.C:
			}
			p, s := w.procs()
			if p != nil && p.alive() {
				pdMax = max(pdMax, rssKiB(p.cmd.Process.Pid))
			}
			if s != nil && s.alive() {
				jvmMax = max(jvmMax, rssKiB(s.cmd.Process.Pid))
			}
		}
	}()

	counts := map[string]int{}
	crashes := 0
	start := time.Now()
	for time.Since(start) < duration {
		time.Sleep(time.Duration(5000+rng.IntN(10000)) * time.Millisecond)
		if time.Since(start) >= duration {
			break
		}
		if !w.spark.alive() {
			t.Errorf("the Spark query stopped on its own (%v); restarting it", w.spark.waitErr)
			w.startSpark()
			continue
		}
		event := []string{"kill spark", "kill spark", "kill pullerd", "kill pullerd", "kill both", "restart emulator"}[rng.IntN(6)]
		counts[event]++
		switch event {
		case "kill spark":
			// Mid-batch when the query is running one within 10 s.
			from := w.spark.lineCount()
			w.spark.nextLine(from, 10*time.Second, func(l string) bool { return strings.HasSuffix(l, " start") })
			time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
			w.spark.kill()
			crashes++
			time.Sleep(time.Duration(rng.IntN(5000)) * time.Millisecond)
			w.startSpark()
		case "kill pullerd":
			w.pd.kill()
			crashes++
			time.Sleep(time.Duration(rng.IntN(3000)) * time.Millisecond)
			w.startPullerd()
		case "kill both":
			w.spark.kill()
			w.pd.kill()
			crashes += 2
			time.Sleep(time.Duration(rng.IntN(3000)) * time.Millisecond)
			w.startPullerd()
			w.startSpark()
		case "restart emulator":
			down := time.Duration(500+rng.IntN(2500)) * time.Millisecond
			if err := w.srv.Restart(context.Background(), emulator.RestartOptions{Downtime: down}); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("%6.1fs %s (published %d)", time.Since(start).Seconds(), event, pub.count())
	}
	checkOwnerOnly(t, w.root)
	published := pub.Stop()
	t.Logf("traffic stopped after %v: %d published; faults %v; draining", time.Since(start).Round(time.Second), len(published), counts)
	r := w.drain(published, 5*time.Minute)
	w.stopChecker()
	close(stopRSS)
	<-rssDone
	t.Logf("pullerd max RSS %d MiB, JVM max RSS %d MiB", pdMax/1024, jvmMax/1024)
	w.requireExact(r, 1)
	if bound := crashes * maxOutstanding; r.Duplicates > bound {
		t.Errorf("%d duplicates after %d crashes: more than crashes x max outstanding (%d)", r.Duplicates, crashes, bound)
	}
	if pdMax > 512<<10 {
		t.Errorf("pullerd RSS reached %d MiB (bound 512 MiB)", pdMax/1024)
	}
	fmt.Printf("CHAOS RESULT: %v, %d msg/s, seed %d, faults %v, %d crashes: %s\n", duration, rate, seed, counts, crashes, r)
	w.stopSpark()
	w.stopPullerd()
}
