package chaos

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
)

// limitMessages are messages at Pub/Sub's limits: empty payloads (with and without
// attributes), 100 attributes with 256-byte keys and 1024-byte values, multi-byte UTF-8 in
// keys, values and ordering keys, a 1024-byte ordering key, and payloads of 1 MB and
// ~9.9 MB (the message limit is 10 MB, attributes included).
func limitMessages() []*pb.PubsubMessage {
	var msgs []*pb.PubsubMessage
	msgs = append(msgs, &pb.PubsubMessage{})
	msgs = append(msgs, &pb.PubsubMessage{Attributes: map[string]string{"only": "attributes"}})
	full := map[string]string{}
	for i := range 100 {
		k := fmt.Sprintf("k%03d-", i)
		k += strings.Repeat("é", (256-len(k))/2) // 2-byte UTF-8 runes: 256 bytes exactly
		k += strings.Repeat("x", 256-len(k))
		full[k] = strings.Repeat("€", 341) + "v" // 341 x 3 + 1 = 1024 bytes
	}
	msgs = append(msgs, &pb.PubsubMessage{Data: []byte("full attributes"), Attributes: full})
	msgs = append(msgs, &pb.PubsubMessage{Data: bytes.Repeat([]byte{0}, 1000), OrderingKey: strings.Repeat("ключ", 128)}) // 1024 bytes
	msgs = append(msgs, &pb.PubsubMessage{Data: []byte("日本語 🚀"), Attributes: map[string]string{"🚀": "🌍", "": "empty key"}})
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	msgs = append(msgs, &pb.PubsubMessage{Data: big})
	huge := make([]byte, 10_000_000-64*1024)
	for i := range huge {
		huge[i] = byte(i * 13)
	}
	msgs = append(msgs, &pb.PubsubMessage{Data: huge, Attributes: map[string]string{"size": "almost 10 MB"}})
	for i := range 200 { // and ordinary traffic around them
		msgs = append(msgs, defaultMessage(i))
	}
	return msgs
}

// TestMessagesAtPubSubLimits: messages at Pub/Sub's limits go through pullerd and the
// rings byte-exact (data, every attribute, ordering key), each read once and acked once.
func TestMessagesAtPubSubLimits(t *testing.T) {
	root := shmRoot(t)
	srv := newEmulator(t, 10*time.Second, "sub")
	pd := startPullerd(t, srv, root, t.TempDir(), "-subscription", "sub", "-partitions", "2", "-streams", "1",
		"-ring-capacity", "33554432")
	msgs := limitMessages()
	want := map[string]*pb.PubsubMessage{}
	for _, m := range msgs {
		ids, err := srv.Publish(t.Context(), topic, &pb.PubsubMessage{Data: bytes.Clone(m.Data), Attributes: m.Attributes, OrderingKey: m.OrderingKey})
		if err != nil {
			t.Fatal(err)
		}
		want[ids[0]] = m
	}
	c := newGoConsumer(t, filepath.Join(root, project+".sub"), 2)
	defer c.close()
	deadline := time.Now().Add(time.Minute)
	for len(c.seen) < len(want) {
		if time.Now().After(deadline) {
			t.Fatalf("read %d of %d messages in a minute", len(c.seen), len(want))
		}
		if c.pollOnce(t) == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	for _, got := range c.rows {
		w := want[got.ID]
		if w == nil {
			t.Fatalf("unknown message %q", got.ID)
		}
		if !bytes.Equal(got.Data, w.Data) || got.OrderingKey != w.OrderingKey || got.HasOrderingKey != (w.OrderingKey != "") || len(got.Attributes) != len(w.Attributes) {
			t.Fatalf("message %s: %d bytes, %d attributes, ordering key %q; published %d bytes, %d attributes, %q",
				got.ID, len(got.Data), len(got.Attributes), got.OrderingKey, len(w.Data), len(w.Attributes), w.OrderingKey)
		}
		for k, v := range w.Attributes {
			if gv, ok := got.Attributes[k]; !ok || gv != v {
				t.Fatalf("message %s: attribute %q = %q (present %v), want %q", got.ID, k, gv, ok, v)
			}
		}
	}
	for id, k := range c.seen {
		if k != 1 {
			t.Errorf("message %s read %d times", id, k)
		}
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		acked, multi := ackState(srv)
		if len(acked) == len(want) && multi == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acked (%d more than once)", len(acked), len(want), multi)
		}
		c.pollOnce(t)
		time.Sleep(20 * time.Millisecond)
	}
	if err := pd.term(30 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestInvalidUTF8CannotBePublished: attribute keys, values and ordering keys are proto3
// strings; a publisher sending invalid UTF-8 in any of them gets an error from the gRPC
// client before anything is sent, so such a message never reaches pullerd. (The Java
// reader still reads strings as bytes: CorruptMappingFuzzTest reads random bytes in every
// utf8 column through Spark without failing.)
func TestInvalidUTF8CannotBePublished(t *testing.T) {
	srv := newEmulator(t, 10*time.Second, "sub")
	conn, err := srv.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pb.NewPublisherClient(conn)
	bad := "\xff\xfe not utf-8"
	for name, m := range map[string]*pb.PubsubMessage{
		"attribute value": {Data: []byte("x"), Attributes: map[string]string{"k": bad}},
		"attribute key":   {Data: []byte("x"), Attributes: map[string]string{bad: "v"}},
		"ordering key":    {Data: []byte("x"), OrderingKey: bad},
	} {
		_, err := client.Publish(t.Context(), &pb.PublishRequest{Topic: "projects/" + project + "/topics/" + topic, Messages: []*pb.PubsubMessage{m}})
		if err == nil || !strings.Contains(err.Error(), "UTF-8") {
			t.Errorf("publish with invalid UTF-8 in the %s: %v; want an error naming UTF-8", name, err)
		}
	}
	if n := len(srv.Messages()); n != 0 {
		t.Errorf("%d messages with invalid UTF-8 reached the emulator", n)
	}
}
