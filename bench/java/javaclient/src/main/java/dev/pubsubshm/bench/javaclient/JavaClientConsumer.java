package dev.pubsubshm.bench.javaclient;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.TimeUnit;

import com.google.api.gax.batching.FlowControlSettings;
import com.google.api.gax.core.NoCredentialsProvider;
import com.google.api.gax.grpc.GrpcTransportChannel;
import com.google.api.gax.rpc.FixedTransportChannelProvider;
import com.google.cloud.pubsub.v1.AckReplyConsumer;
import com.google.cloud.pubsub.v1.MessageReceiver;
import com.google.cloud.pubsub.v1.Subscriber;
import com.google.protobuf.Timestamp;
import com.google.pubsub.v1.PubsubMessage;

import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;

import dev.pubsubshm.bench.common.BenchTally;
import dev.pubsubshm.bench.common.LatencyHistogram;
import dev.pubsubshm.bench.common.MicroClock;
import dev.pubsubshm.bench.common.PayloadCheck;

/**
 * The JVM side of the {@code javaclient} peer of {@code make bench}: Google's Java Pub/Sub
 * subscriber ({@code com.google.cloud.pubsub.v1.Subscriber}, StreamingPull with its own
 * lease management and flow control) against the emulator over plaintext loopback gRPC, as
 * a Spark job that embedded the client would run it. Each message's payload is verified as
 * every bench consumer does ({@link PayloadCheck}: every byte read), its latency recorded
 * from publish_time, and it is acked. A line on stdin gives the number of messages to wait
 * for; then one JSON line with {@link BenchTally}'s fields is printed (batches = messages;
 * alloc_bytes_all_threads is the figure to compare: the client allocates on its own
 * threads).
 *
 * <p>Options: {@code --emulator HOST:PORT --subscription projects/P/subscriptions/S
 * [--streams N] [--max-outstanding-messages N] [--max-outstanding-bytes N]
 * [--warmup-msgs N] [--timeout-s S]}.
 */
public final class JavaClientConsumer
{
    private JavaClientConsumer()
    {
    }

    public static void main(final String[] args)
    {
        String emulator = System.getenv("PUBSUB_EMULATOR_HOST");
        String subscription = null;
        int streams = 1;
        long maxMessages = 1000;
        long maxBytes = 100L << 20;
        long warmupMsgs = 10_000;
        long timeoutS = 120;
        for (int i = 0; i < args.length; i++)
        {
            switch (args[i])
            {
                case "--emulator" -> emulator = args[++i];
                case "--subscription" -> subscription = args[++i];
                case "--streams" -> streams = Integer.parseInt(args[++i]);
                case "--max-outstanding-messages" -> maxMessages = Long.parseLong(args[++i]);
                case "--max-outstanding-bytes" -> maxBytes = Long.parseLong(args[++i]);
                case "--warmup-msgs" -> warmupMsgs = Long.parseLong(args[++i]);
                case "--timeout-s" -> timeoutS = Long.parseLong(args[++i]);
                default ->
                {
                    System.err.println("JavaClientConsumer: unknown option " + args[i]);
                    System.exit(2);
                }
            }
        }
        if (emulator == null || subscription == null)
        {
            System.err.println("JavaClientConsumer: --emulator (or PUBSUB_EMULATOR_HOST) and --subscription are required");
            System.exit(2);
        }
        try
        {
            System.out.println(run(emulator, subscription, streams, maxMessages, maxBytes, warmupMsgs, timeoutS));
            System.exit(0); // the client's executors would keep the JVM up
        }
        catch (final Exception ex)
        {
            System.err.println("JavaClientConsumer: " + ex);
            ex.printStackTrace();
            System.exit(1);
        }
    }

    /** Counts and checks what the subscriber delivers; called on the client's executor threads. */
    private static final class Receiver implements MessageReceiver
    {
        private final ThreadLocal<PayloadCheck> checks = ThreadLocal.withInitial(PayloadCheck::new);
        private final LatencyHistogram latency = new LatencyHistogram();
        private final MicroClock clock = new MicroClock(); // read-only after construction
        private final BenchTally tally;
        private long msgs;
        private long bytes;
        private long failures;
        private long expected = -1;

        Receiver(final long warmupMsgs)
        {
            tally = new BenchTally(latency, warmupMsgs);
        }

        @Override
        public void receiveMessage(final PubsubMessage message, final AckReplyConsumer consumer)
        {
            final ByteBuffer data = message.getData().asReadOnlyByteBuffer();
            final int n = data.remaining();
            final boolean ok = checks.get().verify(data);
            final Timestamp t = message.getPublishTime();
            final long age = clock.nowMicros() - (t.getSeconds() * 1_000_000L + t.getNanos() / 1_000);
            consumer.ack();
            synchronized (this)
            {
                tally.unit(msgs, msgs, bytes);
                msgs++;
                bytes += n;
                if (!ok)
                {
                    failures++;
                }
                latency.record(age, 1);
                if (expected >= 0 && msgs >= expected)
                {
                    notifyAll();
                }
            }
        }

        synchronized String await(final long expect, final long timeoutS) throws InterruptedException
        {
            expected = expect;
            final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(timeoutS);
            while (msgs < expected)
            {
                final long left = deadline - System.nanoTime();
                if (left <= 0)
                {
                    throw new IllegalStateException("received " + msgs + " of " + expected + " messages in " + timeoutS + " s");
                }
                TimeUnit.NANOSECONDS.timedWait(this, left);
            }
            final String json = tally.finish(msgs, bytes, msgs, failures).toString();
            if (failures > 0)
            {
                throw new IllegalStateException(failures + " payloads failed their checksum");
            }
            return json;
        }
    }

    static String run(final String emulator, final String subscription, final int streams, final long maxMessages, final long maxBytes,
        final long warmupMsgs, final long timeoutS) throws Exception
    {
        final Receiver receiver = new Receiver(warmupMsgs);
        final ManagedChannel channel = ManagedChannelBuilder.forTarget(emulator).usePlaintext().maxInboundMessageSize(64 << 20).build();
        final Subscriber subscriber = Subscriber.newBuilder(subscription, receiver)
            .setChannelProvider(FixedTransportChannelProvider.create(GrpcTransportChannel.create(channel)))
            .setCredentialsProvider(NoCredentialsProvider.create())
            .setParallelPullCount(streams)
            .setFlowControlSettings(FlowControlSettings.newBuilder()
                .setMaxOutstandingElementCount(maxMessages)
                .setMaxOutstandingRequestBytes(maxBytes)
                .build())
            .build();
        subscriber.startAsync().awaitRunning(30, TimeUnit.SECONDS);
        System.err.println("JavaClientConsumer: subscribed to " + subscription);
        try
        {
            final String line = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.US_ASCII)).readLine();
            if (line == null)
            {
                throw new IllegalStateException("stdin closed before the message count was given");
            }
            return receiver.await(Long.parseLong(line.trim()), timeoutS);
        }
        finally
        {
            subscriber.stopAsync().awaitTerminated(10, TimeUnit.SECONDS);
            channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
        }
    }
}
