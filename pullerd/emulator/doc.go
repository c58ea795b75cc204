// Package emulator is an in-process Google Cloud Pub/Sub emulator for tests,
// the demo and benchmarks. The command pullerd/cmd/pubsub-emulator runs it as
// a process.
//
// It is built on the official fake, cloud.google.com/go/pubsub/v2/pstest: a
// pstest state (topics, subscriptions, messages, delivery records) served by
// the emulator's own gRPC server, by default on a loopback port. Clients reach
// it like Google's emulator, with PUBSUB_EMULATOR_HOST set to Server.Addr,
// or with Server.Dial or Server.ClientOptions.
//
//	srv, err := emulator.New(emulator.Config{
//		Topics:        []string{"t"},
//		Subscriptions: []emulator.Subscription{{Name: "s", Topic: "t"}},
//	})
//	...
//	defer srv.Close()
//	// ... run the code under test against srv.Addr() ...
//	for _, m := range srv.Messages() {
//		// m.Deliveries, m.Acks, m.Modacks
//	}
//
// # What it changes from pstest
//
// StreamingPull is the emulator's own. pstest's hands out one message per
// stream per 10 ms tick (about 100 msg/s per stream); the emulator's serves
// each stream from pstest's unary Pull and sends many messages per response:
//
//   - Each stream asks pstest for up to Config.MaxMessagesPerPull (1000)
//     messages at a time and sends them in responses of at most
//     Config.MaxResponseBytes (3 MiB), so that plain gRPC clients with the
//     default 4 MiB receive limit can read them. A lone larger message is
//     sent alone.
//   - A stream that finds nothing waits, from Config.MinPollInterval (1 ms)
//     doubling up to Config.MaxPollInterval (50 ms). Publishing through the
//     emulator (the Publish RPC or Server.Publish), acks that return
//     flow-control credit, nacks and keepalive pings wake it at once.
//     Messages that become available otherwise (an expired ack deadline, a
//     publish through Fake) are seen within MaxPollInterval.
//   - max_outstanding_messages and max_outstanding_bytes, which pstest
//     ignores, are honoured: a message is outstanding on the stream that sent
//     it until it is acked or nacked (on any stream of the subscription or by
//     Acknowledge/ModifyAckDeadline) or its ack deadline passes. As Pub/Sub
//     does, the stream stops sending once the outstanding bytes reach the
//     limit, so the last batch may pass it; the emulator sizes batches by the
//     mean message size to keep the excess to about one message.
//   - stream_ack_deadline_seconds governs redelivery, as in pstest: the
//     emulator applies it with a ModifyAckDeadline right after each Pull
//     when it differs from the subscription's deadline. Those modacks are
//     left out of Server.Messages and Server.Message. (pstest leases pulled
//     messages for the deadline the subscription was created with; after an
//     UpdateSubscription of ack_deadline_seconds, streams opened later may
//     get the subscription's deadline instead of their own.)
//   - Acks and modacks sent on a stream are forwarded to pstest's Acknowledge
//     and ModifyAckDeadline, so stream modacks and nacks appear in
//     Message.Modacks (pstest's own StreamingPull does not record them).
//     Refused ones (by a pstest reactor) are dropped, as acks on a stream
//     have no response.
//   - Requests that Pub/Sub refuses end the stream with INVALID_ARGUMENT: a
//     missing subscription or stream_ack_deadline_seconds in the initial
//     request, max_outstanding_* on a later request, modify_deadline arrays
//     of different lengths, deadlines over 600 s. Unlike Pub/Sub, stream and
//     subscription ack deadlines from 1 s are accepted so that tests can
//     watch redelivery quickly (Pub/Sub's minimum is 10 s).
//   - Under protocol_version >= 1 an empty request (a keepalive ping) is
//     answered with an empty response, as by pstest and Pub/Sub.
//   - Every response carries SubscriptionProperties (exactly-once and
//     ordering flags) as pstest's do.
//
// The other RPCs are pstest's, unchanged; requests of up to 16 MiB are
// accepted. Server.Messages, Server.Message, Server.ClearMessages and
// Server.Wait wrap pstest's inspection API; Server.Fake gives the pstest
// server itself.
//
// # Fault injection
//
// Server.FailNextStreams fails the next StreamingPull calls with a gRPC code
// (RESOURCE_EXHAUSTED, UNAVAILABLE, ...) or closes them normally.
// Server.CloseStreams ends the open streams the same way, as Pub/Sub closes
// streams routinely; Server.SetStreamTimeout ends every stream after a
// lifetime. Server.InjectUnaryError fails unary calls (Acknowledge,
// ModifyAckDeadline, Publish, Pull, ...) made over gRPC; Config.Reactors
// passes pstest's own reactors. Server.Restart cuts every connection and
// serves again on the same address, keeping or resetting the state.
// Server.Stats counts streams opened, failed and closed, and messages sent;
// Server.StreamStats counts one subscription's streams (open now, the peak,
// the opens and their times), which is how tests see how many streams a
// client holds.
//
// # What it does not emulate
//
//   - Security: no TLS, no authentication, no IAM (the IAM RPCs are
//     unimplemented); any project name is accepted.
//   - Quotas and limits: no rate limits, no per-stream bandwidth limit
//     (Pub/Sub allows about 10 MB/s per stream), no publish batch limits
//     (1000 messages, 10 MB), no message or attribute size limits, no limit
//     on the size of ack and modack requests.
//   - Server-side delivery policy: no balancing between streams beyond
//     whichever polls first, no throttling of slow clients, no routine
//     stream closes unless injected or set with SetStreamTimeout.
//   - Exactly-once delivery: subscriptions may enable it, and responses say
//     so, but acks and modacks are never confirmed (no
//     AcknowledgeConfirmation or ModifyAckDeadlineConfirmation), stale ack
//     IDs are silently ignored and messages can be redelivered.
//   - Ordering beyond pstest's: on an ordered subscription only the oldest
//     unacked message of each key is deliverable, so a key's messages go out
//     one at a time in publish order; keys have no affinity to a stream.
//     Publishing does not pause a key after a failure.
//   - Retention: pstest drops messages that are not outstanding once they
//     are ten minutes old, whatever the retention settings;
//     retain_acked_messages and snapshots are not supported; Seek supports
//     times only (and pstest's redelivered messages lose their content).
//   - Durability: the state lives in memory; a Restart with ResetState or
//     Close loses it.
//   - Push, BigQuery and Cloud Storage subscriptions deliver nothing.
//   - Performance: pstest serialises every RPC on one mutex, and scans a
//     subscription's whole backlog of unacked messages on every Pull and
//     every 10 ms. Throughput therefore falls as the backlog grows: measured
//     on a shared 2-core machine, one stream drains a 20,000-message backlog
//     at 50,000-100,000 msg/s and a 100,000-message backlog at 15,000-25,000
//     msg/s, against about 95 msg/s through pstest's own StreamingPull
//     (BenchmarkStreamingPull, BenchmarkPstestStreamingPull). Keep backlogs
//     small, or spread them over several subscriptions, for speed.
package emulator
