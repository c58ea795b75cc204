package dev.pubsubshm.bench.publisher;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import com.google.api.core.ApiFuture;
import com.google.api.core.ApiFutureCallback;
import com.google.api.core.ApiFutures;
import com.google.api.gax.batching.BatchingSettings;
import com.google.api.gax.batching.FlowControlSettings;
import com.google.api.gax.batching.FlowController;
import com.google.api.gax.core.NoCredentialsProvider;
import com.google.api.gax.grpc.GrpcTransportChannel;
import com.google.api.gax.rpc.FixedTransportChannelProvider;
import com.google.cloud.pubsub.v1.Publisher;
import com.google.common.util.concurrent.MoreExecutors;
import com.google.protobuf.ByteString;
import com.google.pubsub.v1.PubsubMessage;
import com.google.pubsub.v1.TopicName;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;

import dev.pubsubshm.bench.common.JsonLine;
import dev.pubsubshm.bench.common.JvmMeter;

/**
 * The peer of the sink bench: Google's Java publisher (google-cloud-pubsub) publishing the
 * same messages as the Spark sink run (payload = row number padded to {@code --size} bytes;
 * with {@code --attrs true} two attributes and one of 64 ordering keys) into the same
 * emulator, with the same batching as pullerd (1000 messages, 5 MB, 5 ms) and blocking flow
 * control. A warm-up run precedes the measured one. Prints one JSON line.
 *
 * <pre>
 * java -cp target/classes:$(cat target/classpath.txt) dev.pubsubshm.bench.publisher.JavaPublisherBench \
 *     --emulator host:port --project P --topic T --msgs N --size S [--attrs true] [--warmup W]
 * </pre>
 */
public final class JavaPublisherBench
{
    private JavaPublisherBench()
    {
    }

    public static void main(final String[] args) throws Exception
    {
        final Map<String, String> a = new HashMap<>(Map.of("--warmup", "20000", "--attrs", "false", "--reps", "3"));
        for (int i = 0; i + 1 < args.length; i += 2)
        {
            a.put(args[i], args[i + 1]);
        }
        final long msgs = Long.parseLong(a.get("--msgs"));
        final int size = Integer.parseInt(a.get("--size"));
        final boolean attrs = Boolean.parseBoolean(a.get("--attrs"));
        final ManagedChannel channel = ManagedChannelBuilder.forTarget(a.get("--emulator")).usePlaintext().build();
        final Publisher publisher = Publisher.newBuilder(TopicName.of(a.get("--project"), a.get("--topic")))
            .setChannelProvider(FixedTransportChannelProvider.create(GrpcTransportChannel.create(channel)))
            .setCredentialsProvider(NoCredentialsProvider.create())
            .setEnableMessageOrdering(attrs)
            .setBatchingSettings(BatchingSettings.newBuilder()
                .setElementCountThreshold(1000L)
                .setRequestByteThreshold(5_000_000L)
                .setDelayThresholdDuration(Duration.ofMillis(5))
                .setFlowControlSettings(FlowControlSettings.newBuilder()
                    .setMaxOutstandingElementCount(100_000L)
                    .setMaxOutstandingRequestBytes(256L << 20)
                    .setLimitExceededBehavior(FlowController.LimitExceededBehavior.Block)
                    .build())
                .build())
            .build();
        final JvmMeter meter = new JvmMeter();
        try
        {
            publish(publisher, Long.parseLong(a.get("--warmup")), size, attrs);
            final int reps = Integer.parseInt(a.get("--reps"));
            final JsonLine[] lines = new JsonLine[reps];
            final double[] secs = new double[reps];
            for (int rep = 0; rep < reps; rep++)
            {
                System.gc();
                meter.start();
                publish(publisher, msgs, size, attrs);
                final JvmMeter.Reading r = meter.read();
                secs[rep] = r.elapsedNs() / 1e9;
                final double bytes = (double)msgs * size;
                lines[rep] = new JsonLine()
                    .put("bench", "sink")
                    .put("peer", "google-java-publisher")
                    .put("msgs", msgs)
                    .put("size", size)
                    .put("attrs", attrs)
                    .put("seconds", secs[rep])
                    .put("msgs_per_s", msgs / secs[rep])
                    .put("mb_per_s", bytes / secs[rep] / 1e6)
                    .put("jvm_cpu_s", r.cpuNs() / 1e9)
                    .put("jvm_cpu_s_per_gb", r.cpuNs() / 1e9 / (bytes / 1e9))
                    .put("heap_bytes_per_msg", (double)r.allocBytes() / msgs)
                    .put("gc_count", r.gcCount())
                    .put("gc_ms", r.gcTimeMs())
                    .put("rss_mb", r.rssBytes() / 1e6)
                    .put("reps", reps);
            }
            final double[] sorted = secs.clone();
            Arrays.sort(sorted);
            for (int i = 0; i < reps; i++)
            {
                if (secs[i] == sorted[reps / 2])
                {
                    System.out.println(lines[i]);
                    break;
                }
            }
            System.out.flush();
        }
        finally
        {
            meter.close();
            publisher.shutdown();
            publisher.awaitTermination(1, TimeUnit.MINUTES);
            channel.shutdownNow();
        }
    }

    /** Publishes n messages and waits until every one is answered; fails on the first error. */
    private static void publish(final Publisher publisher, final long n, final int size, final boolean attrs)
        throws InterruptedException
    {
        final CountDownLatch done = new CountDownLatch(1);
        final AtomicLong left = new AtomicLong(n);
        final AtomicReference<Throwable> failure = new AtomicReference<>();
        final ApiFutureCallback<String> cb = new ApiFutureCallback<>()
        {
            @Override
            public void onFailure(final Throwable t)
            {
                failure.compareAndSet(null, t);
                done.countDown();
            }

            @Override
            public void onSuccess(final String id)
            {
                if (left.decrementAndGet() == 0)
                {
                    done.countDown();
                }
            }
        };
        for (long i = 0; i < n; i++)
        {
            final byte[] data = pad(Long.toString(i), size);
            final PubsubMessage.Builder m = PubsubMessage.newBuilder().setData(ByteString.copyFrom(data));
            if (attrs)
            {
                m.putAttributes("row", Long.toString(i)).putAttributes("source", "bench").setOrderingKey("key-" + (i % 64));
            }
            final ApiFuture<String> f = publisher.publish(m.build());
            ApiFutures.addCallback(f, cb, MoreExecutors.directExecutor());
        }
        publisher.publishAllOutstanding();
        if (!done.await(10, TimeUnit.MINUTES))
        {
            throw new IllegalStateException("publishing " + n + " messages did not finish in 10 minutes (" + left.get() + " left)");
        }
        if (failure.get() != null)
        {
            throw new IllegalStateException("publish failed", failure.get());
        }
    }

    /** The bytes of rpad(s, size, 'x'), as Spark's rpad makes them for the sink run. */
    private static byte[] pad(final String s, final int size)
    {
        final byte[] b = new byte[size];
        final byte[] p = s.getBytes(StandardCharsets.US_ASCII);
        final int n = Math.min(p.length, size);
        System.arraycopy(p, 0, b, 0, n);
        for (int i = n; i < size; i++)
        {
            b[i] = 'x';
        }
        return b;
    }
}
