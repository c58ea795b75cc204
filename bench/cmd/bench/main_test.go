package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/pubsub-shm/pubsub-shm/bench/peers"
)

func TestRatios(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	shm := peers.Result{Name: "shm", BytesPerS: 4e9, JVMAllocBytesPerMsg: f(0.5), JVMCPUSPerGB: f(0.25)}
	ratios(&shm, nil, nil)
	if *shm.ShmThroughputX != 1 || *shm.ShmAllocX != 1 || *shm.ShmCPUX != 1 {
		t.Fatalf("shm against itself: %+v", shm)
	}
	pullerd := peers.Result{Name: "pullerd", BytesPerS: 1e8, JVMAllocBytesPerMsg: f(5), JVMCPUSPerGB: f(4)}
	ratios(&pullerd, &shm, nil)
	jc := peers.Result{Name: "javaclient", BytesPerS: 1e7, JVMAllocBytesPerMsg: f(5000), JVMCPUSPerGB: f(60)}
	ratios(&jc, &shm, &pullerd)
	if *jc.ShmThroughputX != 400 || *jc.ShmAllocX != 10000 || *jc.PullerdThroughputX != 10 || *jc.PullerdAllocX != 1000 || *jc.PullerdCPUX != 15 {
		t.Fatalf("javaclient: %+v", jc)
	}
	mem := peers.Result{Name: "memcpy", BytesPerS: 8e9}
	ratios(&mem, &shm, &pullerd)
	if *mem.ShmThroughputX != 0.5 || mem.ShmAllocX != nil || mem.PullerdThroughputX != nil {
		t.Fatalf("memcpy: %+v", mem)
	}
}

func TestGoalsReport(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	res := []peers.Result{
		{Name: "shm", MsgSize: 1024, BytesPerS: 3e9, JVMAllocBytesPerMsg: f(0.7)},
		{Name: "uds", MsgSize: 1024, BytesPerS: 1e9},
		{Name: "flight", MsgSize: 1024, BytesPerS: 1e9},
		{Name: "memcpy", MsgSize: 1024, BytesPerS: 8e9},
		{Name: "javaclient", MsgSize: 1024, BytesPerS: 1e7, JVMAllocBytesPerMsg: f(5000)},
	}
	var b bytes.Buffer
	goals(&b, res)
	for _, want := range []string{"shm >= 2x uds at 1 KiB: 3.00x, reached", "shm >= 4x flight at 1 KiB: 3.00x, NOT reached",
		"shm >= 0.5x memcpy at 1 KiB: 0.38x, NOT reached", "shm heap < 1 B/msg at 1 KiB: 0.700 B/msg, reached",
		"shm heap >= 100x less than javaclient at 1 KiB"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("goals lack %q:\n%s", want, b.String())
		}
	}
}

func TestParseFlagsOrdersPeers(t *testing.T) {
	cfg, err := parseFlags([]string{"-peers", "javaclient,shm,pullerd", "-sizes", "100,16384"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.peers, ",") != "shm,pullerd,javaclient" || len(cfg.sizes) != 2 {
		t.Fatalf("%v %v", cfg.peers, cfg.sizes)
	}
	for _, bad := range [][]string{{"-peers", "kafka"}, {"-sizes", "2"}, {"-duration", "0s"}} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
