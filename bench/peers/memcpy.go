package peers

import (
	"context"
	"time"

	"github.com/pubsub-shm/pubsub-shm/bench/synth"
)

// Memcpy measures the machine's copy bandwidth for the same bytes, on one core: the
// synthetic source's payloads, message after message, copied into a destination as large
// as the shm peer's ring (o.Capacity), wrapping at its end, for o.Duration. This is the
// physical limit of a pipe that moves each payload byte once; the shm peer moves each byte
// once into the ring and reads it once in the JVM.
func Memcpy(ctx context.Context, o Options, size int) (Result, error) {
	src, err := synth.New(synth.Config{Seed: o.Seed, Size: size})
	if err != nil {
		return Result{}, err
	}
	dst := make([]byte, o.Capacity)
	for i := range dst { // fault the pages in before measuring
		dst[i] = 0
	}
	var msgs, bytes int64
	off := 0
	// Warm-up: one pass over the destination.
	for size > 0 && off+size <= len(dst) {
		off += copy(dst[off:], src.Payload(msgs))
		msgs++
	}
	stop, err := o.profile("memcpy", size)
	if err != nil {
		return Result{}, err
	}
	defer stop()
	msgs, off = 0, 0
	start := time.Now()
	end := start.Add(o.Duration)
	for {
		for range 4096 {
			p := src.Payload(msgs)
			if off+len(p) > len(dst) {
				off = 0
			}
			off += copy(dst[off:], p)
			msgs++
			bytes += int64(len(p))
		}
		if time.Now().After(end) || ctx.Err() != nil {
			break
		}
	}
	el := time.Since(start).Seconds()
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	return Result{Name: "memcpy", MsgSize: size, Msgs: msgs, Bytes: bytes, MsgsPerS: float64(msgs) / el, BytesPerS: float64(bytes) / el,
		Notes: "Go copy() of each payload into a buffer of the ring's capacity, one core"}, nil
}
