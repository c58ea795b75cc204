package dev.pubsubshm.spark.sink;

import org.apache.spark.sql.connector.metric.CustomMetric;
import org.apache.spark.sql.connector.metric.CustomSumMetric;
import org.apache.spark.sql.connector.metric.CustomTaskMetric;

/** The sink's task metrics, shown in the Spark UI's SQL tab. */
final class SinkMetrics
{
    static final String ROWS = "pubsubPublishedRows";
    static final String BYTES = "pubsubPublishedBytes";
    static final String WAIT = "pubsubPublishWaitMs";

    private SinkMetrics()
    {
    }

    /** Messages Pub/Sub accepted. */
    public static final class PublishedRows extends CustomSumMetric
    {
        @Override
        public String name()
        {
            return ROWS;
        }

        @Override
        public String description()
        {
            return "messages published";
        }
    }

    /** Encoded bytes of the accepted Publish requests. */
    public static final class PublishedBytes extends CustomSumMetric
    {
        @Override
        public String name()
        {
            return BYTES;
        }

        @Override
        public String description()
        {
            return "publish request bytes";
        }
    }

    /** Time tasks waited for ring space or for Pub/Sub at commit. */
    public static final class PublishWait extends CustomSumMetric
    {
        @Override
        public String name()
        {
            return WAIT;
        }

        @Override
        public String description()
        {
            return "publish wait (ms)";
        }
    }

    static CustomMetric[] supported()
    {
        return new CustomMetric[] {new PublishedRows(), new PublishedBytes(), new PublishWait()};
    }

    static CustomTaskMetric[] taskValues(final long rows, final long bytes, final long waitMs)
    {
        return new CustomTaskMetric[] {value(ROWS, rows), value(BYTES, bytes), value(WAIT, waitMs)};
    }

    private static CustomTaskMetric value(final String name, final long v)
    {
        return new CustomTaskMetric()
        {
            @Override
            public String name()
            {
                return name;
            }

            @Override
            public long value()
            {
                return v;
            }
        };
    }
}
