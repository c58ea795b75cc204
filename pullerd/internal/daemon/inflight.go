package daemon

import (
	"sync"
	"time"

	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
)

// inflight holds the leases of messages that a stream received and that are not in an ack
// table yet: waiting to be handed to a partition, or in its queue while its ring is full
// (a slow reader). The lease loop extends them together with the tables' batches, so that
// back-pressure longer than the ack deadline does not let Pub/Sub redeliver them. A
// partition drops a delivery once it has taken its messages into its batches (which are
// filed in the table before they wait for ring space, or within the linger time).
type inflight struct {
	mu sync.Mutex
	m  map[*inflightLease]struct{}
}

// inflightLease is one delivery's lease.
type inflightLease struct {
	msgs []*pb.ReceivedMessage
	end  time.Time // when the lease runs out: receipt + ack deadline, then each extension
}

// add registers msgs, leased until end, and returns the handle to remove them with.
func (f *inflight) add(msgs []*pb.ReceivedMessage, end time.Time) *inflightLease {
	l := &inflightLease{msgs: msgs, end: end}
	f.mu.Lock()
	if f.m == nil {
		f.m = map[*inflightLease]struct{}{}
	}
	f.m[l] = struct{}{}
	f.mu.Unlock()
	return l
}

// remove drops a lease (nil is ignored).
func (f *inflight) remove(l *inflightLease) {
	if l == nil {
		return
	}
	f.mu.Lock()
	delete(f.m, l)
	f.mu.Unlock()
}

// due appends the ack IDs of the leases that end before now + margin to ids, and moves
// their end to extendTo.
func (f *inflight) due(now time.Time, margin time.Duration, extendTo time.Time, ids []string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	for l := range f.m {
		if l.end.Sub(now) > margin {
			continue
		}
		for _, rm := range l.msgs {
			ids = append(ids, rm.GetAckId())
		}
		l.end = extendTo
	}
	return ids
}
