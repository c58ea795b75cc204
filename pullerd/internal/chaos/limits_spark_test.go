//go:build crossproc

package chaos

import (
	"testing"
	"time"

	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
)

// TestCrossProcessMessagesAtPubSubLimits: the messages of limitMessages (empty payloads,
// 100 attributes of 256-byte keys and 1024-byte values, multi-byte UTF-8, a 1024-byte
// ordering key, 1 MB and ~9.9 MB payloads) through pullerd, the rings and a Spark query:
// the sink sees each once with the CRC of its data and of its attributes as published.
func TestCrossProcessMessagesAtPubSubLimits(t *testing.T) {
	w := newWorld(t, worldOptions{pullerdArgs: []string{"-ring-capacity", "33554432"}})
	w.startPullerd()
	w.startSpark()
	w.startChecker()
	msgs := limitMessages()
	pub := startPublisher(w.srv, 1000, len(msgs), func(i int) *pb.PubsubMessage { return msgs[i] })
	w.finish(pub, 2*time.Minute, 0, "")
}
