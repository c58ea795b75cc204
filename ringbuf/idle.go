package ringbuf

import (
	"runtime"
	"time"
)

// IdleStrategy decides what a waiting side does when it found no work. Idle is called
// with the work count of the last attempt: 0 means nothing was done and the caller should
// back off; a positive count resets the strategy. Implementations are not safe for
// concurrent use: give each waiting goroutine its own.
type IdleStrategy interface {
	Idle(workCount int)
	Reset()
}

// BusySpin never gives up the CPU: lowest latency, one core burnt per waiter.
type BusySpin struct{}

// Idle does nothing.
func (BusySpin) Idle(int) {}

// Reset does nothing.
func (BusySpin) Reset() {}

// Yield gives the processor to other goroutines when idle.
type Yield struct{}

// Idle yields when workCount is 0.
func (Yield) Idle(workCount int) {
	if workCount == 0 {
		runtime.Gosched()
	}
}

// Reset does nothing.
func (Yield) Reset() {}

// Backoff spins, then yields, then parks with exponentially growing sleeps from MinPark
// to MaxPark (Agrona's BackoffIdleStrategy). The zero value is not usable; use
// NewBackoff.
type Backoff struct {
	MaxSpins, MaxYields int
	MinPark, MaxPark    time.Duration

	spins, yields int
	park          time.Duration
}

// NewBackoff returns a Backoff with the given limits.
func NewBackoff(maxSpins, maxYields int, minPark, maxPark time.Duration) *Backoff {
	return &Backoff{MaxSpins: maxSpins, MaxYields: maxYields, MinPark: minPark, MaxPark: maxPark}
}

// DefaultIdle returns the strategy this package uses when the caller gives none: 100
// spins, 10 yields, then parks from 1 µs up to 1 ms.
func DefaultIdle() IdleStrategy { return NewBackoff(100, 10, time.Microsecond, time.Millisecond) }

// Idle backs off one step when workCount is 0 and resets otherwise.
func (b *Backoff) Idle(workCount int) {
	if workCount > 0 {
		b.Reset()
		return
	}
	switch {
	case b.spins < b.MaxSpins:
		b.spins++
	case b.yields < b.MaxYields:
		b.yields++
		runtime.Gosched()
	default:
		if b.park == 0 {
			b.park = b.MinPark
		}
		time.Sleep(b.park)
		b.park *= 2
		if b.park > b.MaxPark {
			b.park = b.MaxPark
		}
	}
}

// Reset returns to spinning.
func (b *Backoff) Reset() { b.spins, b.yields, b.park = 0, 0, 0 }
