package ackd

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	gax "github.com/googleapis/gax-go/v2"
	"github.com/googleapis/gax-go/v2/apierror"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Request limits of Acknowledge and ModifyAckDeadline: the Go client sends at most 2500
// ack IDs per request, and Pub/Sub refuses requests over about 512 KiB.
const (
	MaxAckIDsPerRequest   = 2500
	MaxRequestBytes       = 512 << 10
	perAckIDOverheadBytes = 3 // protobuf tag and length of one repeated string
)

// Client is the part of the generated Pub/Sub client (apiv1.SubscriptionAdminClient) that
// ackd uses.
type Client interface {
	Acknowledge(ctx context.Context, req *pb.AcknowledgeRequest, opts ...gax.CallOption) error
	ModifyAckDeadline(ctx context.Context, req *pb.ModifyAckDeadlineRequest, opts ...gax.CallOption) error
}

// noRetry turns off the generated client's own retries: Sender retries itself, counting
// and logging each attempt.
var noRetry = gax.WithRetry(func() gax.Retryer { return nil })

// Backoff is an exponential back-off with full jitter.
type Backoff struct {
	Initial, Max time.Duration
	Multiplier   float64
}

// DefaultBackoff starts at 100 ms and grows x2 up to 10 s.
var DefaultBackoff = Backoff{Initial: 100 * time.Millisecond, Max: 10 * time.Second, Multiplier: 2}

// Delay returns the wait before retry number attempt (0-based): a uniformly random
// duration in [d/2, d] where d = Initial * Multiplier^attempt, capped at Max.
func (b Backoff) Delay(attempt int) time.Duration {
	d := float64(b.Initial)
	for i := 0; i < attempt && d < float64(b.Max); i++ {
		d *= b.Multiplier
	}
	d = min(d, float64(b.Max))
	return time.Duration(d/2 + rand.Float64()*d/2)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Transient reports whether a failed Acknowledge or ModifyAckDeadline may succeed when
// retried (the codes Pub/Sub's clients retry for exactly-once subscriptions, plus
// UNAVAILABLE and INTERNAL).
func Transient(code codes.Code) bool {
	switch code {
	case codes.Unavailable, codes.ResourceExhausted, codes.DeadlineExceeded, codes.Aborted, codes.Internal:
		return true
	}
	return false
}

// Result counts what became of the ack IDs given to Sender.Ack or Sender.Modack.
type Result struct {
	Succeeded int // accepted by Pub/Sub
	Failed    int // refused for good (logged and counted); they will be redelivered
	Retries   int // requests sent again after a transient failure
}

// Sender sends Acknowledge and ModifyAckDeadline requests for one subscription, split to
// Pub/Sub's request limits, retrying transient failures and handling the per-ack-ID
// results of exactly-once subscriptions. It is safe for concurrent use.
type Sender struct {
	Client       Client
	Subscription string // full name, projects/<p>/subscriptions/<s>
	Backoff      Backoff
	Log          *zap.Logger
	Metrics      *Metrics // may be nil
}

// Chunks splits ids into slices of at most MaxAckIDsPerRequest IDs and MaxRequestBytes
// encoded bytes (fixed request overhead included); the slices share ids' array.
func Chunks(ids []string, fixed int) [][]string {
	var out [][]string
	start, size := 0, fixed
	for i, id := range ids {
		n := len(id) + perAckIDOverheadBytes
		if i > start && (i-start >= MaxAckIDsPerRequest || size+n > MaxRequestBytes) {
			out = append(out, ids[start:i])
			start, size = i, fixed
		}
		size += n
	}
	if start < len(ids) {
		out = append(out, ids[start:])
	}
	return out
}

// Ack acknowledges ids. It returns an error only when ctx ended before every ID was
// settled (the Result then counts what was); permanent refusals are logged, counted in
// Result.Failed and in the metrics, and not returned.
func (s *Sender) Ack(ctx context.Context, ids []string) (Result, error) {
	return s.send(ctx, ids, -1)
}

// Modack sets the ack deadline of ids to secs seconds from now; 0 is a nack (Pub/Sub
// redelivers at once). Errors as for Ack.
func (s *Sender) Modack(ctx context.Context, ids []string, secs int32) (Result, error) {
	return s.send(ctx, ids, secs)
}

// send acks (secs < 0) or modacks ids.
func (s *Sender) send(ctx context.Context, ids []string, secs int32) (Result, error) {
	var res Result
	var firstErr error
	for _, chunk := range Chunks(ids, len(s.Subscription)+16) {
		r, err := s.sendChunk(ctx, chunk, secs)
		res.Succeeded += r.Succeeded
		res.Failed += r.Failed
		res.Retries += r.Retries
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return res, firstErr
}

func opName(secs int32) string {
	switch {
	case secs < 0:
		return "Acknowledge"
	case secs == 0:
		return "ModifyAckDeadline(0)"
	}
	return "ModifyAckDeadline"
}

// sendChunk sends one request's worth of ids until each is settled or ctx ends.
func (s *Sender) sendChunk(ctx context.Context, ids []string, secs int32) (Result, error) {
	var res Result
	op := opName(secs)
	for attempt := 0; ; attempt++ {
		var err error
		if secs < 0 {
			err = s.Client.Acknowledge(ctx, &pb.AcknowledgeRequest{Subscription: s.Subscription, AckIds: ids}, noRetry)
		} else {
			err = s.Client.ModifyAckDeadline(ctx, &pb.ModifyAckDeadlineRequest{Subscription: s.Subscription, AckIds: ids, AckDeadlineSeconds: secs}, noRetry)
		}
		if err == nil {
			res.Succeeded += len(ids)
			return res, nil
		}
		if ctx.Err() != nil {
			return res, fmt.Errorf("ackd: %s of %d ack IDs on %s abandoned: %w", op, len(ids), s.Subscription, ctx.Err())
		}
		retry, failed := classify(err, ids)
		for reason, n := range failed {
			res.Failed += n
			s.Metrics.ackFailed(reason, n)
			s.Log.Error("ackd: ack IDs refused for good; Pub/Sub will redeliver them",
				zap.String("op", op), zap.String("subscription", s.Subscription),
				zap.String("reason", reason), zap.Int("ack_ids", n), zap.Error(err))
		}
		if len(retry) == 0 {
			return res, nil
		}
		res.Retries++
		s.Metrics.retried(op)
		d := s.Backoff.Delay(attempt)
		s.Log.Warn("ackd: transient failure, retrying", zap.String("op", op),
			zap.String("subscription", s.Subscription), zap.Int("ack_ids", len(retry)),
			zap.Int("attempt", attempt+1), zap.Duration("backoff", d), zap.Error(err))
		if err := sleep(ctx, d); err != nil {
			return res, fmt.Errorf("ackd: %s of %d ack IDs on %s abandoned while backing off: %w", op, len(retry), s.Subscription, err)
		}
		ids = retry
	}
}

// classify splits the ids of a failed request into those to retry and the number that
// failed for good, by reason. It follows Pub/Sub's client
// libraries: an exactly-once subscription lists failed ack IDs in the error's ErrorInfo
// metadata ("TRANSIENT_..." ones are retried, others are permanent); unlisted IDs follow
// the status code.
func classify(err error, ids []string) (retry []string, failed map[string]int) {
	st, _ := status.FromError(err)
	var meta map[string]string
	if ae, isAPI := apierror.FromError(err); isAPI {
		st = ae.GRPCStatus()
		meta = ae.Metadata()
	}
	code := codes.Unknown
	if st != nil {
		code = st.Code()
	}
	failed = map[string]int{}
	for _, id := range ids {
		if r, listed := meta[id]; listed {
			if strings.HasPrefix(r, "TRANSIENT_") {
				retry = append(retry, id)
			} else {
				failed[r]++
			}
			continue
		}
		if Transient(code) {
			retry = append(retry, id)
		} else {
			failed[code.String()]++
		}
	}
	return retry, failed
}
