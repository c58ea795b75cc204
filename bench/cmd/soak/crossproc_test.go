//go:build crossproc

package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pubsub-shm/pubsub-shm/ringbuf/arrowbatch"
)

// TestCrossProcessSoak runs a short soak at a reduced rate (two rings, a real JVM) so that
// the harness cannot rot: every message must arrive intact and be committed exactly once,
// and soak.json and soak.png must be written. The rate and memory verdicts are logged,
// not asserted (the machine may be busy).
func TestCrossProcessSoak(t *testing.T) {
	out := t.TempDir()
	cfg := config{Duration: 15 * time.Second, Warmup: 3 * time.Second, Size: 1024, Rate: 100e6, Tolerance: 0.05, Partitions: 2,
		Capacity: 16 << 20, Policy: arrowbatch.Policy{MaxRows: 32768, MaxBytes: 256 << 10, Linger: time.Millisecond},
		Seed: 5, JVMOpts: []string{"-Xms128m", "-Xmx128m"}, Out: out, Progress: "none", MaxPark: 100 * time.Microsecond}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := run(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(rep.Verdict)
	s := rep.Summary
	if !s.Intact || s.Msgs == 0 || s.Msgs != s.Bytes/1024 {
		t.Fatalf("not intact: %+v", s)
	}
	if len(rep.Seconds) < 10 {
		t.Fatalf("%d per-second records for a 15 s run", len(rep.Seconds))
	}
	for _, f := range []string{"soak.json", "soak.png"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Fatalf("%s: %v", f, err)
		}
	}
}
