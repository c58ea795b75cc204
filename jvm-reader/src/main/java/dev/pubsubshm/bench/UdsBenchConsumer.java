package dev.pubsubshm.bench;

import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
import java.nio.file.Path;

import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.ipc.ArrowStreamReader;

import dev.pubsubshm.bench.check.MessageBatchCheck;
import dev.pubsubshm.bench.common.BenchTally;
import dev.pubsubshm.bench.common.LatencyHistogram;
import dev.pubsubshm.bench.common.MicroClock;

/**
 * The JVM side of the {@code uds} peer of {@code make bench}: connects to a Unix domain
 * socket on which a Go process writes an Arrow IPC stream of the message schema (arrow-go's
 * {@code ipc.Writer}), reads it with Arrow Java's {@link ArrowStreamReader} (each batch is
 * copied from the socket into buffers of the allocator), verifies every payload byte as
 * the ring consumer does ({@link MessageBatchCheck}) and prints one JSON line
 * ({@link BenchTally}'s fields) at the end of the stream.
 *
 * <p>Options: {@code --socket PATH [--warmup-batches N]}. Exit status 0 only if every
 * payload checksum held and the allocator ended empty.
 */
public final class UdsBenchConsumer
{
    private UdsBenchConsumer()
    {
    }

    public static void main(final String[] args)
    {
        Path socket = null;
        int warmupBatches = 1;
        for (int i = 0; i < args.length; i++)
        {
            switch (args[i])
            {
                case "--socket" -> socket = Path.of(args[++i]);
                case "--warmup-batches" -> warmupBatches = Integer.parseInt(args[++i]);
                default ->
                {
                    System.err.println("UdsBenchConsumer: unknown option " + args[i]);
                    System.exit(2);
                }
            }
        }
        if (socket == null)
        {
            System.err.println("UdsBenchConsumer: --socket is required");
            System.exit(2);
        }
        try
        {
            System.out.println(run(socket, warmupBatches));
        }
        catch (final Exception ex)
        {
            System.err.println("UdsBenchConsumer: " + ex);
            ex.printStackTrace();
            System.exit(1);
        }
    }

    static String run(final Path socket, final int warmupBatches) throws Exception
    {
        final LatencyHistogram latency = new LatencyHistogram();
        final MessageBatchCheck check = new MessageBatchCheck(latency, false);
        final MicroClock clock = new MicroClock();
        try (RootAllocator allocator = new RootAllocator();
             SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
             BenchTally tally = new BenchTally(latency, warmupBatches))
        {
            ch.connect(UnixDomainSocketAddress.of(socket));
            final String json;
            try (ArrowStreamReader reader = new ArrowStreamReader(ch, allocator))
            {
                final VectorSchemaRoot root = reader.getVectorSchemaRoot();
                long lastCalibrationNs = System.nanoTime();
                while (true)
                {
                    tally.unit(check.batches(), check.msgs(), check.bytes());
                    if (!reader.loadNextBatch())
                    {
                        break;
                    }
                    final long now = System.nanoTime();
                    if (now - lastCalibrationNs > 1_000_000_000L)
                    {
                        clock.calibrate();
                        lastCalibrationNs = now;
                    }
                    check.check(root, null, 0, clock.nowMicros());
                }
                json = tally.finish(check.msgs(), check.bytes(), check.batches(), check.failures()).toString();
            }
            if (check.failures() > 0)
            {
                throw new IllegalStateException(check.failures() + " payloads failed their checksum");
            }
            if (allocator.getAllocatedMemory() != 0)
            {
                throw new IllegalStateException("Arrow allocator holds " + allocator.getAllocatedMemory() + " bytes after the stream");
            }
            return json;
        }
    }
}
