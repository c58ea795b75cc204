//go:build cluster

package chaos

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pubsub-shm/pubsub-shm/bench/jvm"
)

// TestClusterThroughput: the same query, on the same data, on the two-executor standalone
// cluster and in local[2] mode, printing one JSON line per mode and their ratio. The rings
// are filled by ringgen (the synthetic pullerd, bench/cmd/ringgen) rather than by the
// emulator, whose backlog scan bounds any pullerd run at 10-20k msg/s here: 4 rings of
// `perRing` 1 KiB messages in both modes (2 hosts x 2 partitions on the cluster, 4 partitions
// on the driver's host in local mode), read by ClusterQuery into its json file sink with
// numPartitions=2 and back-to-back triggers. ringgen exits 0 only once every batch it wrote
// was committed exactly once; the committed sink must hold every message once.
//
// Measured, not asserted: this machine has 2 cores, shared by the master, both Workers, both
// executors, the driver and the ringgens on the cluster, and by the driver and a ringgen in
// local mode.
func TestClusterThroughput(t *testing.T) {
	const perRing = 400000
	root, err := jvm.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "ringgen")
	if out, err := exec.Command("go", "build", "-o", bin, filepath.Join(root, "bench", "cmd", "ringgen")).CombinedOutput(); err != nil {
		t.Fatalf("go build ./bench/cmd/ringgen: %v\n%s", err, out)
	}
	setDir := filepath.Join(clusterRoot, project+"."+clusterSub)
	ringgenArgs := func(dir string, partitions int, seed int) []string {
		return []string{bin, "-dir", dir, "-partitions", strconv.Itoa(partitions), "-count", strconv.Itoa(perRing),
			"-size", "1024", "-seed", strconv.Itoa(seed), "-exit-when-committed"}
	}
	results := map[string]map[string]any{}

	// The cluster: two hosts, each with a ringgen of 2 partitions in its own /dev/shm.
	{
		c := newCluster(t)
		c.startMaster()
		var gens []*proc
		for i, hc := range []struct{ name, ip string }{{"a", "127.0.0.2"}, {"b", "127.0.0.3"}} {
			c.addHostWith(hc.name, hc.ip, func(h *simHost) {
				if err := os.MkdirAll(h.shm(clusterRoot), 0o700); err != nil {
					t.Fatal(err)
				}
				cmd := exec.Command(h.nsenter()[0], append(h.nsenter()[1:], ringgenArgs(setDir, 2, 100*(i+1))...)...)
				g := startProc(t, "ringgen-"+h.name, c.logDir(), cmd)
				g.waitLine(t, 0, time.Minute, "ringgen's rings", func(l string) bool { return strings.HasPrefix(l, "READY ") })
				gens = append(gens, g)
			})
		}
		start := time.Now()
		c.startDriver(2, "--trigger", "0 seconds", "--no-host-column")
		procs := map[string]int{"driver": c.driver.cmd.Process.Pid, "master": c.master.cmd.Process.Pid}
		for i, h := range c.hosts {
			procs["worker-"+h.name] = h.worker.cmd.Process.Pid
			procs["ringgen-"+h.name] = gens[i].cmd.Process.Pid
			for _, pid := range h.executorPids() {
				procs["executor-"+h.name] = pid
			}
		}
		cpu := startCPU(procs)
		results["cluster"] = runToCommitted(t, c, gens, 4*perRing, start)
		results["cluster"]["cpu_s"] = cpu.stop()
		results["cluster"]["executors"] = 2
		c.stopDriver()
		for _, h := range c.hosts {
			h.worker.term(time.Minute)
		}
	}

	// local[2]: one ringgen of 4 partitions on the driver's host.
	{
		c := newCluster(t)
		if err := os.MkdirAll(clusterRoot, 0o700); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(clusterRoot) })
		g := startProc(t, "ringgen-local", c.logDir(), exec.Command(bin, ringgenArgs(setDir, 4, 100)[1:]...))
		g.waitLine(t, 0, time.Minute, "ringgen's rings", func(l string) bool { return strings.HasPrefix(l, "READY ") })
		start := time.Now()
		c.startDriver(0, "--trigger", "0 seconds", "--no-host-column", "--conf", "spark.master=local[2]")
		cpu := startCPU(map[string]int{"driver": c.driver.cmd.Process.Pid, "ringgen": g.cmd.Process.Pid})
		results["local"] = runToCommitted(t, c, []*proc{g}, 4*perRing, start)
		results["local"]["cpu_s"] = cpu.stop()
		results["local"]["executors"] = "local[2]"
		c.stopDriver()
	}

	for _, mode := range []string{"cluster", "local"} {
		line, _ := json.Marshal(results[mode])
		fmt.Println(string(line))
	}
	cl, lo := results["cluster"]["msgs_per_s"].(float64), results["local"]["msgs_per_s"].(float64)
	line, _ := json.Marshal(map[string]any{"test": "cluster_vs_local", "cluster_msgs_per_s": cl, "local_msgs_per_s": lo,
		"cluster_over_local": round2(cl / max(lo, 1e-9))})
	fmt.Println(string(line))
}

// cpuWatch is the CPU time (user + system) processes used between startCPU and stop: where
// the two cores went during a run. A process that exits before stop (ringgen) counts
// up to its last sample (sampled every 100 ms).
type cpuWatch struct {
	pids  map[string]int
	first map[string]float64
	last  map[string]float64
	wall  time.Time
	done  chan struct{}
	wg    chan struct{}
}

func startCPU(pids map[string]int) *cpuWatch {
	w := &cpuWatch{pids: pids, first: map[string]float64{}, last: map[string]float64{}, wall: time.Now(),
		done: make(chan struct{}), wg: make(chan struct{})}
	for name, pid := range pids {
		if v, ok := cpuSeconds(pid); ok {
			w.first[name], w.last[name] = v, v
		}
	}
	go func() {
		defer close(w.wg)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.done:
				return
			case <-tick.C:
				for name, pid := range w.pids {
					if v, ok := cpuSeconds(pid); ok {
						w.last[name] = v
					}
				}
			}
		}
	}()
	return w
}

// stop returns CPU seconds per process and in all, and the wall time.
func (w *cpuWatch) stop() map[string]float64 {
	close(w.done)
	<-w.wg
	out := map[string]float64{"wall": round2(time.Since(w.wall).Seconds())}
	var total float64
	for name := range w.pids {
		if v, ok := cpuSeconds(w.pids[name]); ok {
			w.last[name] = v
		}
		d := w.last[name] - w.first[name]
		out[name] = round2(d)
		total += d
	}
	out["all"] = round2(total)
	return out
}

// cpuSeconds is a process's user + system CPU time from /proc/<pid>/stat.
func cpuSeconds(pid int) (float64, bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, false
	}
	ut, _ := strconv.ParseFloat(f[11], 64) // field 14 of stat: utime, in clock ticks (100/s)
	st, _ := strconv.ParseFloat(f[12], 64) // field 15: stime
	return (ut + st) / 100, true
}

// runToCommitted waits until every ringgen exited (each exits 0 once everything it wrote was
// committed exactly once), checks the committed sink holds each of the `total` messages
// once, and returns the throughput figures of the run.
func runToCommitted(t *testing.T, c *cluster, gens []*proc, total int, start time.Time) map[string]any {
	t.Helper()
	for _, g := range gens {
		select {
		case <-g.done:
			if g.waitErr != nil {
				t.Fatalf("%s: %v\n%s", g.name, g.waitErr, tailFile(g.logPath, 20))
			}
		case <-time.After(10 * time.Minute):
			t.Fatalf("%s: not everything it wrote was committed within 10 minutes (driver alive %v)\n%s", g.name,
				c.driver.alive(), tailFile(c.driver.logPath, 20))
		}
	}
	wall := time.Since(start).Seconds()
	var rows []clusterRow
	deadline := time.Now().Add(time.Minute)
	for {
		rows, _ = c.sink.read()
		if len(rows) >= total || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	ids := map[string]int{}
	for _, r := range rows {
		ids[r.ID]++
		if r.Len != 1024 {
			t.Errorf("message %s: length %d in the sink, want 1024", r.ID, r.Len)
		}
	}
	// ringgen numbers each partition's messages 0, 1, 2, ...: every id once per ring.
	const rings = 4
	if len(rows) != total || len(ids) != total/rings {
		t.Errorf("committed sink: %d rows, %d distinct ids; want %d rows, %d ids", len(rows), len(ids), total, total/rings)
	}
	for id, n := range ids {
		if n != rings {
			t.Errorf("message id %s is %d times in the committed sink, want once per ring (%d)", id, n, rings)
			break
		}
	}
	var all int64
	for _, b := range c.batches() {
		all += b.rows
	}
	steady, secs := throughput(c.batches())
	return map[string]any{"test": "cluster_throughput", "messages": total, "msg_bytes": 1024, "rings": 4,
		"batches": len(c.batches()), "rows": all, "steady_rows": steady, "steady_s": round2(secs),
		"msgs_per_s":  round2(float64(steady) / max(secs, 1e-9)),
		"bytes_per_s": round2(float64(steady) * 1024 / max(secs, 1e-9)), "wall_s_from_driver_start": round2(wall)}
}
