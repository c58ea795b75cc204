// Command bench runs the peers of make bench side by side in one run, each fed the same
// synthetic messages (bench/synth, same seed), at each message size: the project's ring
// (shm), an Arrow IPC stream over a Unix domain socket (uds), Arrow Flight DoGet on
// loopback (flight), the machine's copy bandwidth (memcpy), and on the embedded Pub/Sub
// emulator pullerd -> rings -> JVM (pullerd) against Google's Java subscriber
// (javaclient). Every JVM consumer verifies every payload byte.
//
// It prints one JSON line per (peer, size) on stdout, with ratios against shm (and, for
// javaclient, against pullerd), writes them all to <out>/bench.json, draws
// <out>/bench.png, and prints a table and the project's goals, reached or not, on stderr.
// A peer that fails fails the run (exit status 1) after the others ran.
//
//	go run ./bench/cmd/bench                       # what make bench runs
//	go run ./bench/cmd/bench -peers shm,uds -sizes 1024 -duration 5s
//	go run ./bench/cmd/bench -cpuprofile bench/out/prof -jfr bench/out/prof   # profile both sides
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/pubsub-shm/pubsub-shm/bench/peers"
	"github.com/pubsub-shm/pubsub-shm/bench/plot"
)

// allPeers in the order they run at each size: shm first (the others' ratios refer to
// it), pullerd before javaclient (whose line carries ratios against pullerd).
var allPeers = []string{"shm", "uds", "flight", "memcpy", "pullerd", "javaclient"}

type config struct {
	sizes  []int
	peers  []string
	out    string
	name   string
	opts   peers.Options
	pubsub peers.PubSubOptions
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (config, error) {
	cfg := config{opts: peers.DefaultOptions, pubsub: peers.DefaultPubSubOptions}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	sizes := fs.String("sizes", "100,1024,16384", "message payload sizes in bytes, comma-separated")
	list := fs.String("peers", strings.Join(allPeers, ","), "peers to run, comma-separated (of "+strings.Join(allPeers, ",")+")")
	fs.StringVar(&cfg.out, "out", "bench/out", "directory for <name>.json and <name>.png")
	fs.StringVar(&cfg.name, "name", "bench", "base name of the output files")
	fs.DurationVar(&cfg.opts.Duration, "duration", cfg.opts.Duration, "how long each producer writes (or publishes) per peer and size")
	fs.Int64Var(&cfg.opts.Seed, "seed", cfg.opts.Seed, "seed of the synthetic source (the same for every peer)")
	jvmOpts := fs.String("jvm-opts", strings.Join(cfg.opts.JVMOpts, " "), "extra options of every consumer JVM, space-separated")
	fs.StringVar(&cfg.opts.CPUProfile, "cpuprofile", "", "path prefix for Go CPU profiles of the producer side (<prefix>-<peer>-<size>.pprof)")
	fs.StringVar(&cfg.opts.JFR, "jfr", "", "path prefix for Java Flight Recordings of the consumer JVMs (<prefix>-<peer>-<size>.jfr)")
	fs.IntVar(&cfg.pubsub.Streams, "streams", cfg.pubsub.Streams, "javaclient/pullerd: StreamingPull streams (pullerd: and partitions)")
	fs.Int64Var(&cfg.pubsub.MaxOutstandingMessages, "max-outstanding-messages", cfg.pubsub.MaxOutstandingMessages, "javaclient/pullerd: flow control, messages")
	fs.Int64Var(&cfg.pubsub.MaxOutstandingBytes, "max-outstanding-bytes", cfg.pubsub.MaxOutstandingBytes, "javaclient/pullerd: flow control, bytes")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 4 {
			return cfg, fmt.Errorf("bad -sizes entry %q (sizes of at least 4 bytes carry a checksum)", s)
		}
		cfg.sizes = append(cfg.sizes, n)
	}
	for _, p := range strings.Split(*list, ",") {
		p = strings.TrimSpace(p)
		known := false
		for _, a := range allPeers {
			known = known || a == p
		}
		if !known {
			return cfg, fmt.Errorf("unknown peer %q in -peers (known: %s)", p, strings.Join(allPeers, ","))
		}
		cfg.peers = append(cfg.peers, p)
	}
	// Run in the canonical order whatever the flag's order.
	var ordered []string
	for _, a := range allPeers {
		for _, p := range cfg.peers {
			if p == a {
				ordered = append(ordered, a)
				break
			}
		}
	}
	cfg.peers = ordered
	cfg.opts.JVMOpts = strings.Fields(*jvmOpts)
	if cfg.opts.Duration <= 0 {
		return cfg, errors.New("-duration must be positive")
	}
	return cfg, nil
}

func run(ctx context.Context, cfg config, stdout, stderr io.Writer) error {
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return err
	}
	for _, p := range cfg.peers {
		if p == "pullerd" {
			tmp, err := os.MkdirTemp("", "bench-pullerd-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			bin, err := peers.BuildPullerd(ctx, tmp)
			if err != nil {
				return err
			}
			cfg.pubsub.PullerdBin = bin
		}
	}
	var results []peers.Result
	var failed []string
	started := time.Now()
	for _, size := range cfg.sizes {
		var shm, pullerd *peers.Result
		for _, name := range cfg.peers {
			fmt.Fprintf(stderr, "bench: %-10s %6d B ...", name, size)
			t0 := time.Now()
			res, err := runPeer(ctx, cfg, name, size)
			if err != nil {
				fmt.Fprintf(stderr, " FAILED after %.1fs\n", time.Since(t0).Seconds())
				fmt.Fprintf(stderr, "bench: %s at %d B: %v\n", name, size, err)
				failed = append(failed, fmt.Sprintf("%s/%d", name, size))
				if ctx.Err() != nil {
					return ctx.Err()
				}
				continue
			}
			fmt.Fprintf(stderr, " %s/s in %.1fs\n", human(res.BytesPerS), time.Since(t0).Seconds())
			ratios(&res, shm, pullerd)
			switch name {
			case "shm":
				shm = &res
			case "pullerd":
				pullerd = &res
			}
			line, _ := json.Marshal(res)
			fmt.Fprintln(stdout, string(line))
			results = append(results, res)
		}
	}
	if err := write(cfg, results); err != nil {
		return err
	}
	table(stderr, results)
	goals(stderr, results)
	fmt.Fprintf(stderr, "bench: %d results in %.0fs: %s, %s\n", len(results), time.Since(started).Seconds(),
		filepath.Join(cfg.out, cfg.name+".json"), filepath.Join(cfg.out, cfg.name+".png"))
	if len(failed) > 0 {
		return fmt.Errorf("%d runs failed: %s", len(failed), strings.Join(failed, ", "))
	}
	return nil
}

func runPeer(ctx context.Context, cfg config, name string, size int) (peers.Result, error) {
	switch name {
	case "shm":
		return peers.Shm(ctx, cfg.opts, size)
	case "uds":
		return peers.Uds(ctx, cfg.opts, size)
	case "flight":
		return peers.Flight(ctx, cfg.opts, size)
	case "memcpy":
		return peers.Memcpy(ctx, cfg.opts, size)
	case "pullerd":
		return peers.Pullerd(ctx, cfg.opts, cfg.pubsub, size)
	case "javaclient":
		return peers.JavaClient(ctx, cfg.opts, cfg.pubsub, size)
	}
	return peers.Result{}, fmt.Errorf("unknown peer %q", name)
}

// ratios fills r's ratios against shm and, for javaclient, against pullerd.
func ratios(r *peers.Result, shm, pullerd *peers.Result) {
	thr := func(ref *peers.Result) *float64 {
		if ref == nil || r.BytesPerS <= 0 {
			return nil
		}
		return ptr(ref.BytesPerS / r.BytesPerS)
	}
	worse := func(mine, ref *float64) *float64 {
		if mine == nil || ref == nil || *ref <= 0 {
			return nil
		}
		return ptr(*mine / *ref)
	}
	if shm != nil || r.Name == "shm" {
		ref := shm
		if r.Name == "shm" {
			ref = r
		}
		r.ShmThroughputX = thr(ref)
		r.ShmAllocX = worse(r.JVMAllocBytesPerMsg, ref.JVMAllocBytesPerMsg)
		r.ShmCPUX = worse(r.JVMCPUSPerGB, ref.JVMCPUSPerGB)
	}
	if r.Name == "javaclient" && pullerd != nil {
		r.PullerdThroughputX = thr(pullerd)
		r.PullerdAllocX = worse(r.JVMAllocBytesPerMsg, pullerd.JVMAllocBytesPerMsg)
		r.PullerdCPUX = worse(r.JVMCPUSPerGB, pullerd.JVMCPUSPerGB)
	}
}

func ptr[T any](v T) *T { return &v }

func write(cfg config, results []peers.Result) error {
	var lines []byte
	var pts []plot.Point
	for _, r := range results {
		b, _ := json.Marshal(r)
		lines = append(append(lines, b...), '\n')
		alloc := math.NaN()
		if r.JVMAllocBytesPerMsg != nil {
			alloc = *r.JVMAllocBytesPerMsg
		}
		pts = append(pts, plot.Point{Peer: r.Name, MsgSize: r.MsgSize, BytesPerS: r.BytesPerS, AllocPerMsg: alloc})
	}
	if err := os.WriteFile(filepath.Join(cfg.out, cfg.name+".json"), lines, 0o644); err != nil {
		return err
	}
	host, _ := os.Hostname()
	return plot.Bench(filepath.Join(cfg.out, cfg.name+".png"), fmt.Sprintf("make bench (%s, %d s per run)", host, int(cfg.opts.Duration.Seconds())), pts)
}

// table prints the results as a Markdown table (the README's).
func table(w io.Writer, results []peers.Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "| peer\t| msg size\t| msgs/s\t| bytes/s\t| p99 latency\t| JVM heap B/msg\t| JVM CPU s/GB\t| shm is x faster\t|")
	fmt.Fprintln(tw, "|---\t|---\t|---\t|---\t|---\t|---\t|---\t|---\t|")
	for _, r := range results {
		fmt.Fprintf(tw, "| %s\t| %s\t| %s\t| %s/s\t| %s\t| %s\t| %s\t| %s\t|\n", r.Name, sizeName(r.MsgSize), count(r.MsgsPerS), human(r.BytesPerS),
			opt(r.P99LatencyUs, func(v float64) string { return latency(v) }), opt(r.JVMAllocBytesPerMsg, sig), opt(r.JVMCPUSPerGB, sig),
			opt(r.ShmThroughputX, func(v float64) string { return sig(v) + "x" }))
	}
	tw.Flush()
}

// goals prints the goals with the figures of this run.
func goals(w io.Writer, results []peers.Result) {
	get := func(name string, size int) *peers.Result {
		for i := range results {
			if results[i].Name == name && results[i].MsgSize == size {
				return &results[i]
			}
		}
		return nil
	}
	verdict := func(ok bool) string {
		if ok {
			return "reached"
		}
		return "NOT reached"
	}
	fmt.Fprintln(w, "goals (one run; ratios of bytes/s unless said otherwise):")
	shm := get("shm", 1024)
	if shm == nil {
		fmt.Fprintln(w, "  no shm result at 1 KiB: goals not evaluated")
		return
	}
	if u := get("uds", 1024); u != nil && u.BytesPerS > 0 {
		x := shm.BytesPerS / u.BytesPerS
		fmt.Fprintf(w, "  shm >= 2x uds at 1 KiB: %.2fx, %s\n", x, verdict(x >= 2))
	}
	if f := get("flight", 1024); f != nil && f.BytesPerS > 0 {
		x := shm.BytesPerS / f.BytesPerS
		fmt.Fprintf(w, "  shm >= 4x flight at 1 KiB: %.2fx, %s\n", x, verdict(x >= 4))
	}
	for _, r := range results {
		if r.Name != "memcpy" || r.BytesPerS <= 0 {
			continue
		}
		if s := get("shm", r.MsgSize); s != nil {
			x := s.BytesPerS / r.BytesPerS
			fmt.Fprintf(w, "  shm >= 0.5x memcpy at %s: %.2fx, %s\n", sizeName(r.MsgSize), x, verdict(x >= 0.5))
		}
	}
	for _, r := range results {
		if r.Name == "shm" && r.JVMAllocBytesPerMsg != nil {
			fmt.Fprintf(w, "  shm heap < 1 B/msg at %s: %s B/msg, %s\n", sizeName(r.MsgSize), sig(*r.JVMAllocBytesPerMsg), verdict(*r.JVMAllocBytesPerMsg < 1))
		}
	}
	for _, r := range results {
		if r.Name != "javaclient" || r.JVMAllocBytesPerMsg == nil {
			continue
		}
		for _, ref := range []string{"shm", "pullerd"} {
			if s := get(ref, r.MsgSize); s != nil && s.JVMAllocBytesPerMsg != nil && *s.JVMAllocBytesPerMsg > 0 {
				x := *r.JVMAllocBytesPerMsg / *s.JVMAllocBytesPerMsg
				fmt.Fprintf(w, "  %s heap >= 100x less than javaclient at %s: %s vs %s B/msg = %sx, %s\n", ref, sizeName(r.MsgSize),
					sig(*s.JVMAllocBytesPerMsg), sig(*r.JVMAllocBytesPerMsg), sig(x), verdict(x >= 100))
			}
		}
	}
}

func opt(v *float64, f func(float64) string) string {
	if v == nil {
		return "-"
	}
	return f(*v)
}

func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// human formats bytes in decimal units.
func human(b float64) string {
	switch {
	case b >= 1e9:
		return fmt.Sprintf("%.2f GB", b/1e9)
	case b >= 1e6:
		return fmt.Sprintf("%.1f MB", b/1e6)
	case b >= 1e3:
		return fmt.Sprintf("%.1f kB", b/1e3)
	}
	return fmt.Sprintf("%.0f B", b)
}

func count(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2f M", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1f k", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func latency(us float64) string {
	if us >= 1000 {
		return fmt.Sprintf("%.1f ms", us/1000)
	}
	return fmt.Sprintf("%.0f µs", us)
}

// sig formats v with 2-3 significant digits.
func sig(v float64) string {
	switch a := math.Abs(v); {
	case a == 0:
		return "0"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	case a >= 0.01:
		return fmt.Sprintf("%.3f", v)
	}
	return fmt.Sprintf("%.2g", v)
}
