// Command sinkbench measures the write path against the emulator, beside Google's Java
// publisher on the same emulator in the same run, and prints JSON lines.
//
// It starts the embedded Pub/Sub emulator, builds and starts pullerd (a real process, with
// PUBSUB_EMULATOR_HOST), then for each message size runs
//
//   - a Spark JVM (dev.pubsubshm.spark.sink.SinkBench, local[2]) writing -msgs generated rows
//     with df.write.format("pubsub-shm"), and the same query into Spark's noop sink (what
//     Spark costs without any sink), and
//   - a JVM publishing the same messages with com.google.cloud:google-cloud-pubsub
//     (bench/java-publisher, its own classpath),
//
// checks that the emulator received exactly -msgs messages for each, and prints the JVMs'
// JSON lines (msgs/s, MB/s, JVM CPU, heap allocated per message) plus one line per size with
// the sink's own heap and CPU (sink run minus noop run). Every run publishes into its own
// topic; the emulator's messages are cleared between runs (pstest slows down as it holds
// more).
//
//	go run ./bench/cmd/sinkbench -msgs 200000 -sizes 100,1024 -out bench/out/sink.json
//
// Needs `make jvm` (jvm-reader/target) and `mvn -f bench/java-publisher/pom.xml package`.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pubsub-shm/pubsub-shm/bench/jvm"
	"github.com/pubsub-shm/pubsub-shm/pullerd/emulator"
)

const project = "sinkbench"

// sparkFlags are the JVM options Spark 4 needs on Java 17 (jvm-reader/pom.xml's jvm.opens).
var sparkFlags = jvm.SparkFlags

type config struct {
	msgs, warmup int
	reps         int
	sizes        []int
	attrs        bool
	heap         string
	out          string
}

func main() {
	var cfg config
	var sizes string
	flag.IntVar(&cfg.msgs, "msgs", 200000, "messages per measured run")
	flag.IntVar(&cfg.warmup, "warmup", 20000, "messages of each JVM's warm-up run (not measured)")
	flag.IntVar(&cfg.reps, "reps", 3, "measured runs per peer; the median by time is reported")
	flag.StringVar(&sizes, "sizes", "100,1024", "payload sizes in bytes, comma-separated")
	flag.BoolVar(&cfg.attrs, "attrs", false, "also send two attributes and an ordering key (64 keys) per message")
	flag.StringVar(&cfg.heap, "heap", "2g", "-Xmx of each JVM")
	flag.StringVar(&cfg.out, "out", "", "also append the JSON lines to this file")
	flag.Parse()
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 16 {
			fmt.Fprintf(os.Stderr, "sinkbench: -sizes %q: want sizes of at least 16 bytes\n", sizes)
			os.Exit(2)
		}
		cfg.sizes = append(cfg.sizes, n)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "sinkbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config) error {
	root, err := jvm.RepoRoot()
	if err != nil {
		return err
	}
	pubCP, err := os.ReadFile(filepath.Join(root, "bench/java-publisher/target/classpath.txt"))
	if err != nil {
		return fmt.Errorf("%w: build the publisher peer first (mvn -f bench/java-publisher/pom.xml package)", err)
	}
	var out io.Writer = os.Stdout
	if cfg.out != "" {
		if err := os.MkdirAll(filepath.Dir(cfg.out), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(cfg.out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		out = io.MultiWriter(os.Stdout, f)
	}

	srv, err := emulator.New(emulator.Config{Project: project})
	if err != nil {
		return err
	}
	defer srv.Close()

	tmp, err := os.MkdirTemp("", "sinkbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	shm := fmt.Sprintf("/dev/shm/pubsub-shm-sinkbench-%d", os.Getpid())
	defer os.RemoveAll(shm)
	bin := filepath.Join(tmp, "pullerd")
	if b, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./pullerd").CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./pullerd: %v\n%s", err, b)
	}
	pd := exec.Command(bin, "-shm-dir", shm, "-partitions", "1", "-streams", "1", "-log-level", "warn")
	pd.Env = append(os.Environ(), "PUBSUB_EMULATOR_HOST="+srv.Addr())
	pd.Stderr = os.Stderr
	pdOut, _ := pd.StdoutPipe()
	if err := pd.Start(); err != nil {
		return err
	}
	defer func() {
		_ = pd.Process.Signal(syscall.SIGTERM)
		_ = pd.Wait()
	}()
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pdOut)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "pullerd ready") {
				ready <- sc.Text()
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		return fmt.Errorf("pullerd did not start within 30 s")
	}

	for _, size := range cfg.sizes {
		lines := map[string]map[string]any{}
		dups := map[string]int{}
		for _, peer := range []string{"sink", "java"} {
			topic := fmt.Sprintf("%s-%d", peer, size)
			if err := srv.CreateTopic(ctx, topic); err != nil {
				return err
			}
			args := []string{"--project", project, "--topic", topic, "--msgs", strconv.Itoa(cfg.msgs),
				"--size", strconv.Itoa(size), "--warmup", strconv.Itoa(cfg.warmup), "--attrs", strconv.FormatBool(cfg.attrs),
				"--reps", strconv.Itoa(cfg.reps)}
			var cmd *exec.Cmd
			if peer == "sink" {
				cmd, err = jvm.Command(append(append([]string{}, sparkFlags...), "-Xmx"+cfg.heap), "dev.pubsubshm.spark.sink.SinkBench",
					append(args, "--ring-root", shm)...)
				if err != nil {
					return err
				}
			} else {
				cp := filepath.Join(root, "bench/java-publisher/target/classes") + ":" + strings.TrimSpace(string(pubCP))
				cmd = exec.Command(javaBin(), append([]string{"-XX:+UseG1GC", "-Xmx" + cfg.heap, "-cp", cp,
					"dev.pubsubshm.bench.publisher.JavaPublisherBench", "--emulator", srv.Addr()}, args...)...)
			}
			cmd.Stderr = os.Stderr
			stdout, err := cmd.Output()
			if err != nil {
				return fmt.Errorf("%s peer (size %d): %w", peer, size, err)
			}
			got := 0
			for _, m := range srv.Messages() {
				if strings.HasSuffix(m.Topic, "/topics/"+topic) {
					got++
				}
			}
			// warm-up, then -reps measured runs (the sink JVM: through Spark and through a
			// DataWriter alone)
			want := cfg.warmup + cfg.reps*cfg.msgs
			if peer == "sink" {
				want = 2*cfg.warmup + 2*cfg.reps*cfg.msgs
			}
			// Google's client retries on its own deadlines and may publish a message twice
			// (at-least-once); the sink must not lose any.
			if got < want || (peer == "sink" && got != want) {
				return fmt.Errorf("%s peer (size %d): the emulator holds %d messages on %s, want %d", peer, size, got, topic, want)
			}
			dups[peer] = got - want
			srv.ClearMessages()
			for _, l := range strings.Split(strings.TrimSpace(string(stdout)), "\n") {
				var m map[string]any
				if json.Unmarshal([]byte(l), &m) != nil {
					continue
				}
				fmt.Fprintln(out, l)
				if p, ok := m["peer"].(string); ok {
					lines[p] = m
				}
			}
		}
		dw, google := lines["pubsub-shm-datawriter"], lines["google-java-publisher"]
		if dw != nil && google != nil {
			msgs := float64(cfg.msgs)
			line := map[string]any{"bench": "sink", "peer": "summary", "size": size, "msgs": cfg.msgs, "attrs": cfg.attrs,
				"datawriter_msgs_per_s":         num(dw, "msgs_per_s"),
				"datawriter_heap_bytes_per_msg": num(dw, "heap_bytes_per_msg"),
				"datawriter_jvm_cpu_us_per_msg": num(dw, "jvm_cpu_s") / msgs * 1e6,
				"spark_sink_msgs_per_s":         num(lines["spark-pubsub-shm-sink"], "msgs_per_s"),
				"spark_noop_msgs_per_s":         num(lines["spark-noop-sink"], "msgs_per_s"),
				"google_msgs_per_s":             num(google, "msgs_per_s"),
				"google_heap_bytes_per_msg":     num(google, "heap_bytes_per_msg"),
				"google_jvm_cpu_us_per_msg":     num(google, "jvm_cpu_s") / msgs * 1e6,
				"google_duplicates":             dups["java"],
				"sink_duplicates":               dups["sink"],
			}
			b, _ := json.Marshal(line)
			fmt.Fprintln(out, string(b))
		}
	}
	return nil
}

func num(m map[string]any, k string) float64 {
	if m == nil {
		return 0
	}
	f, _ := m[k].(float64)
	return f
}

func javaBin() string {
	if h := os.Getenv("JAVA_HOME"); h != "" {
		return filepath.Join(h, "bin", "java")
	}
	return "java"
}
