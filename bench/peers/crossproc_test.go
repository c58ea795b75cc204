//go:build crossproc

package peers

import (
	"context"
	"testing"
	"time"

	"github.com/pubsub-shm/pubsub-shm/bench/jvm"
)

// TestCrossProcessPeers runs every peer of make bench briefly at 1 KiB so that the harness
// cannot rot: each must move messages end to end with every payload verified by its
// consumer. Speed is not asserted. The flight and javaclient peers need bench/java built
// (make bench-jvm) and are skipped otherwise.
func TestCrossProcessPeers(t *testing.T) {
	o := DefaultOptions
	o.Duration = time.Second
	o.JVMOpts = []string{"-Xmx512m"}
	ps := DefaultPubSubOptions
	ps.WarmupMsgs = 500
	ps.WarmupBatches = 1
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	bin, err := BuildPullerd(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ps.PullerdBin = bin
	for _, tc := range []struct {
		name   string
		module string // bench/java module the peer needs, if any
		run    func() (Result, error)
	}{
		{"shm", "", func() (Result, error) { return Shm(ctx, o, 1024) }},
		{"uds", "", func() (Result, error) { return Uds(ctx, o, 1024) }},
		{"memcpy", "", func() (Result, error) { return Memcpy(ctx, o, 1024) }},
		{"flight", "flight", func() (Result, error) { return Flight(ctx, o, 1024) }},
		{"pullerd", "", func() (Result, error) { return Pullerd(ctx, o, ps, 1024) }},
		{"javaclient", "javaclient", func() (Result, error) { return JavaClient(ctx, o, ps, 1024) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.module != "" {
				if _, err := jvm.ModuleClasspath(tc.module); err != nil {
					t.Fatalf("%v (make test builds it: make bench-jvm)", err)
				}
			}
			res, err := tc.run()
			if err != nil {
				t.Fatal(err)
			}
			if res.Name != tc.name || res.Msgs <= 0 || res.BytesPerS <= 0 || res.ChecksumFailures != 0 {
				t.Fatalf("result %+v", res)
			}
			if tc.name != "memcpy" && (res.JVMAllocBytesPerMsg == nil || res.JVMCPUSPerGB == nil || res.P99LatencyUs == nil) {
				t.Fatalf("JVM figures missing: %+v", res)
			}
			t.Logf("%s: %.0f msgs/s, %.2f GB/s", tc.name, res.MsgsPerS, res.BytesPerS/1e9)
		})
	}
}
