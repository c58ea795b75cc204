package dev.pubsubshm.ring;

import java.nio.file.Path;

/** Opens the package-private test helpers to tests in other packages (the tools). */
public final class TestRingsAccess
{
    private TestRingsAccess()
    {
    }

    public static Path createData(final Path dir, final int partition, final long capacity)
    {
        return TestRings.createData(dir, partition, capacity);
    }

    public static Path createCommit(final Path dir, final long capacity)
    {
        return TestRings.createCommit(dir, capacity);
    }

    public static Producer producer(final RingFile ring)
    {
        return new Producer(new TestDataProducer(ring));
    }

    /** A live test producer of RAW records. */
    public static final class Producer implements AutoCloseable
    {
        private final TestDataProducer producer;

        Producer(final TestDataProducer producer)
        {
            this.producer = producer;
        }

        public long nextBatchId()
        {
            return producer.nextBatchId();
        }

        /** Writes a RAW record, or returns {@code false} if the ring has no room for it yet. */
        public boolean tryWriteRaw(final byte[] body)
        {
            try
            {
                producer.writeRaw(body);
                return true;
            }
            catch (final IllegalStateException full)
            {
                return false;
            }
        }

        public void heartbeat()
        {
            producer.heartbeat();
        }

        /** Ends the stream (producer_closed = 1). */
        @Override
        public void close()
        {
            producer.close();
        }
    }
}
