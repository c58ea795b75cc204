package dev.pubsubshm.ring.tools;

import dev.pubsubshm.ring.BackoffIdleStrategy;
import dev.pubsubshm.ring.CommitRingWriter;
import dev.pubsubshm.ring.DataRecord;
import dev.pubsubshm.ring.DataRingReader;
import dev.pubsubshm.ring.PeerState;
import dev.pubsubshm.ring.RingDescriptor;
import dev.pubsubshm.ring.RingFile;

import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import java.util.zip.CRC32C;

/**
 * The Java end of the cross-process test that the Go side drives: consumes RAW records from
 * {@code D/data-P.ring}, checks every payload byte, releases each record, and writes COMMIT
 * records into {@code D/commit.ring}.
 *
 * <pre>
 * java -cp jvm-reader/target/classes:$(cat jvm-reader/target/classpath.txt) \
 *     dev.pubsubshm.ring.tools.CheckConsumer --dir D --partition P --records N \
 *     [--commit-every K] [--timeout-s S]
 * </pre>
 *
 * <p>Payload check: a body of 4 bytes or more ends with the little-endian CRC32C
 * ({@link CRC32C}) of the bytes before it; a shorter body holds {@code (batch_id + i) & 0xFF}
 * at index {@code i}. Batch ids must be consecutive from the first record read. Every
 * {@code K} records (default 1000) and at the end, a COMMIT of the range since the previous
 * commit is written. On success it prints one JSON line
 * {@code {"records":N,"bytes":B,"checksum_failures":F,"first_batch_id":..,"last_batch_id":..}}
 * and exits 0 if {@code F == 0}, else 1; on any error it prints the error to stderr and
 * exits 1. {@code --timeout-s} (default 60) bounds the whole run.
 */
public final class CheckConsumer
{
    private CheckConsumer()
    {
    }

    /** Parsed command line. */
    record Options(Path dir, int partition, long records, long commitEvery, long timeoutNs)
    {
        static Options parse(final String[] args)
        {
            Path dir = null;
            int partition = -1;
            long records = -1;
            long commitEvery = 1000;
            long timeoutS = 60;
            for (int i = 0; i < args.length; i++)
            {
                final String flag = args[i];
                if (i + 1 >= args.length)
                {
                    throw new IllegalArgumentException("flag " + flag + " needs a value");
                }
                final String value = args[++i];
                switch (flag)
                {
                    case "--dir" -> dir = Path.of(value);
                    case "--partition" -> partition = parseInt(flag, value);
                    case "--records" -> records = parseLong(flag, value);
                    case "--commit-every" -> commitEvery = parseLong(flag, value);
                    case "--timeout-s" -> timeoutS = parseLong(flag, value);
                    default -> throw new IllegalArgumentException("unknown flag " + flag +
                        " (want --dir D --partition P --records N [--commit-every K] [--timeout-s S])");
                }
            }
            if (dir == null)
            {
                throw new IllegalArgumentException("--dir is required");
            }
            if (partition < 0)
            {
                throw new IllegalArgumentException("--partition=" + partition + " is required and must be >= 0");
            }
            if (records < 1)
            {
                throw new IllegalArgumentException("--records=" + records + " is required and must be >= 1");
            }
            if (commitEvery < 1)
            {
                throw new IllegalArgumentException("--commit-every=" + commitEvery + " must be >= 1");
            }
            if (timeoutS < 1)
            {
                throw new IllegalArgumentException("--timeout-s=" + timeoutS + " must be >= 1");
            }
            return new Options(dir, partition, records, commitEvery, TimeUnit.SECONDS.toNanos(timeoutS));
        }

        private static int parseInt(final String flag, final String value)
        {
            try
            {
                return Integer.parseInt(value);
            }
            catch (final NumberFormatException ex)
            {
                throw new IllegalArgumentException(flag + "=" + value + " is not an integer", ex);
            }
        }

        private static long parseLong(final String flag, final String value)
        {
            try
            {
                return Long.parseLong(value);
            }
            catch (final NumberFormatException ex)
            {
                throw new IllegalArgumentException(flag + "=" + value + " is not an integer", ex);
            }
        }
    }

    /** What a run found. */
    record Result(long records, long bytes, long checksumFailures, long firstBatchId, long lastBatchId)
    {
        String toJson()
        {
            return "{\"records\":" + records + ",\"bytes\":" + bytes + ",\"checksum_failures\":" + checksumFailures +
                ",\"first_batch_id\":" + firstBatchId + ",\"last_batch_id\":" + lastBatchId + "}";
        }
    }

    /**
     * Runs the check; see the class comment.
     *
     * @param args the command line.
     */
    public static void main(final String[] args)
    {
        final int status;
        try
        {
            status = run(Options.parse(args), System.out, System.err);
        }
        catch (final RuntimeException ex)
        {
            System.err.println("CheckConsumer: " + ex);
            System.exit(1);
            return;
        }
        System.exit(status);
    }

    /**
     * Consumes and checks {@code options.records()} records.
     *
     * @return the exit status: 0 if every record was read and no checksum failed, else 1.
     */
    static int run(final Options options, final PrintStream out, final PrintStream err)
    {
        final Result result = consume(options, err);
        out.println(result.toJson());
        out.flush();
        return result.checksumFailures() == 0 && result.records() == options.records() ? 0 : 1;
    }

    static Result consume(final Options options, final PrintStream err)
    {
        final long deadline = System.nanoTime() + options.timeoutNs();
        final Path dataPath = options.dir().resolve("data-" + options.partition() + ".ring");
        final Path commitPath = options.dir().resolve("commit.ring");
        final long openTimeoutNs = Math.max(0, deadline - System.nanoTime());
        try (RingFile data = RingFile.open(dataPath, RingFile.OpenOptions.defaults()
                .kind(RingDescriptor.KIND_DATA)
                .partition(options.partition())
                .notReadyTimeout(openTimeoutNs, TimeUnit.NANOSECONDS));
             RingFile commits = RingFile.open(commitPath, RingFile.OpenOptions.defaults()
                .kind(RingDescriptor.KIND_COMMIT)
                .notReadyTimeout(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS));
             DataRingReader reader = new DataRingReader(data);
             CommitRingWriter writer = new CommitRingWriter(commits))
        {
            final long instanceId = data.instanceId();
            final DataRecord record = new DataRecord();
            final CRC32C crc = new CRC32C();
            final BackoffIdleStrategy idle = new BackoffIdleStrategy();
            long count = 0;
            long bytes = 0;
            long failures = 0;
            long first = 0;
            long last = 0;
            long uncommittedFrom = 0;
            while (count < options.records())
            {
                final long remaining = deadline - System.nanoTime();
                if (remaining <= 0 || !reader.poll(record, idle, Math.min(remaining, TimeUnit.SECONDS.toNanos(1))))
                {
                    if (System.nanoTime() - deadline >= 0)
                    {
                        throw new IllegalStateException("timed out after " + TimeUnit.NANOSECONDS.toSeconds(options.timeoutNs()) +
                            " s with " + count + " of " + options.records() + " records read from \"" + dataPath + "\"");
                    }
                    final PeerState producer = reader.producerState();
                    if (producer == PeerState.DEAD)
                    {
                        throw new IllegalStateException("producer of \"" + dataPath + "\" is dead after " + count + " of " +
                            options.records() + " records (" + data.describePeer(RingFile.Side.PRODUCER, System.nanoTime()) + ")");
                    }
                    if (reader.isEndOfStream())
                    {
                        throw new IllegalStateException("producer of \"" + dataPath + "\" closed the stream after " + count +
                            " of " + options.records() + " records");
                    }
                    continue;
                }
                if (record.type() != RingDescriptor.TYPE_RAW)
                {
                    throw new IllegalStateException("record at position=" + record.position() + " of \"" + dataPath +
                        "\" has type=" + RingDescriptor.recordTypeName(record.type()) + "; CheckConsumer reads RAW records only");
                }
                final long batchId = record.batchId();
                if (count == 0)
                {
                    first = batchId;
                    uncommittedFrom = batchId;
                }
                else if (batchId != last + 1)
                {
                    throw new IllegalStateException("batch_id=" + batchId + " at position=" + record.position() +
                        " of \"" + dataPath + "\" does not follow batch_id=" + last);
                }
                last = batchId;
                if (!checkBody(record, crc))
                {
                    failures++;
                    if (failures <= 10)
                    {
                        err.println("CheckConsumer: checksum failure at batch_id=" + batchId + " position=" +
                            record.position() + " body_length=" + record.bodyLength());
                    }
                }
                bytes += record.bodyLength();
                count++;
                reader.release(record.position());
                if (count % options.commitEvery() == 0)
                {
                    writer.commit(options.partition(), instanceId, uncommittedFrom, last);
                    uncommittedFrom = last + 1;
                }
            }
            if (uncommittedFrom <= last)
            {
                writer.commit(options.partition(), instanceId, uncommittedFrom, last);
            }
            return new Result(count, bytes, failures, first, last);
        }
    }

    /**
     * Checks a RAW body in place, touching every byte, without copying it.
     *
     * @return {@code true} if the body carries the expected checksum or pattern.
     */
    static boolean checkBody(final DataRecord record, final CRC32C crc)
    {
        final ByteBuffer body = record.bodyBuffer();
        final int start = body.position();
        final int length = (int)record.bodyLength();
        if (length < 4)
        {
            final long batchId = record.batchId();
            for (int i = 0; i < length; i++)
            {
                if ((body.get(start + i) & 0xFF) != ((batchId + i) & 0xFF))
                {
                    return false;
                }
            }
            return true;
        }
        final int crcIndex = start + length - 4;
        final int expected = body.order(ByteOrder.LITTLE_ENDIAN).getInt(crcIndex);
        body.limit(crcIndex);
        crc.reset();
        crc.update(body); // reads the mapped bytes in place (direct-buffer intrinsic)
        return (int)crc.getValue() == expected;
    }
}
