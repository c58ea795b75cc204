package dev.pubsubshm.bench.flight;

import java.nio.charset.StandardCharsets;

import org.apache.arrow.flight.FlightClient;
import org.apache.arrow.flight.FlightStream;
import org.apache.arrow.flight.Location;
import org.apache.arrow.flight.Ticket;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.VectorSchemaRoot;

import dev.pubsubshm.bench.check.MessageBatchCheck;
import dev.pubsubshm.bench.common.BenchTally;
import dev.pubsubshm.bench.common.LatencyHistogram;
import dev.pubsubshm.bench.common.MicroClock;

/**
 * The JVM side of the {@code flight} peer of {@code make bench}: an Arrow Flight client
 * (flight-core, gRPC over loopback TCP) that calls DoGet on a Go arrow-go Flight server
 * streaming record batches of the message schema, verifies every payload byte as the ring
 * consumer does ({@link MessageBatchCheck}) and prints one JSON line ({@link BenchTally}'s
 * fields) when the stream ends.
 *
 * <p>Options: {@code --host H --port P --ticket T [--warmup-batches N]}. Exit status 0
 * only if every payload checksum held and the allocator ended empty.
 */
public final class FlightBenchConsumer
{
    private FlightBenchConsumer()
    {
    }

    public static void main(final String[] args)
    {
        String host = "127.0.0.1";
        int port = -1;
        String ticket = "bench";
        int warmupBatches = 1;
        for (int i = 0; i < args.length; i++)
        {
            switch (args[i])
            {
                case "--host" -> host = args[++i];
                case "--port" -> port = Integer.parseInt(args[++i]);
                case "--ticket" -> ticket = args[++i];
                case "--warmup-batches" -> warmupBatches = Integer.parseInt(args[++i]);
                default ->
                {
                    System.err.println("FlightBenchConsumer: unknown option " + args[i]);
                    System.exit(2);
                }
            }
        }
        if (port <= 0)
        {
            System.err.println("FlightBenchConsumer: --port is required");
            System.exit(2);
        }
        try
        {
            System.out.println(run(host, port, ticket, warmupBatches));
            System.exit(0); // gRPC's threads would keep the JVM up
        }
        catch (final Exception ex)
        {
            System.err.println("FlightBenchConsumer: " + ex);
            ex.printStackTrace();
            System.exit(1);
        }
    }

    static String run(final String host, final int port, final String ticket, final int warmupBatches) throws Exception
    {
        final LatencyHistogram latency = new LatencyHistogram();
        final MessageBatchCheck check = new MessageBatchCheck(latency, false);
        final MicroClock clock = new MicroClock();
        final String json;
        try (RootAllocator allocator = new RootAllocator();
             FlightClient client = FlightClient.builder(allocator, Location.forGrpcInsecure(host, port)).build();
             BenchTally tally = new BenchTally(latency, warmupBatches))
        {
            try (FlightStream stream = client.getStream(new Ticket(ticket.getBytes(StandardCharsets.UTF_8))))
            {
                final VectorSchemaRoot root = stream.getRoot();
                long lastCalibrationNs = System.nanoTime();
                while (true)
                {
                    tally.unit(check.batches(), check.msgs(), check.bytes());
                    if (!stream.next())
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
        }
        return json;
    }
}
