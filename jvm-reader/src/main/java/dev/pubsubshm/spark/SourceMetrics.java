package dev.pubsubshm.spark;

import org.apache.spark.sql.connector.metric.CustomMetric;
import org.apache.spark.sql.connector.metric.CustomSumMetric;
import org.apache.spark.sql.connector.metric.CustomTaskMetric;

/**
 * The source's custom task metrics ({@code Scan.supportedCustomMetrics}), summed over the
 * tasks of a micro-batch and shown with the scan node in Spark's SQL UI: rows and Arrow bytes
 * the tasks read from the rings. Spark instantiates the metric classes by name, so they have
 * public no-argument constructors.
 */
public final class SourceMetrics
{
    /** Name of the rows metric. */
    public static final String RECORDS_READ = "recordsRead";
    /** Name of the bytes metric. */
    public static final String BYTES_READ = "bytesRead";

    private SourceMetrics()
    {
    }

    /** @return the metrics the scan reports. */
    static CustomMetric[] supported()
    {
        return new CustomMetric[] {new RecordsRead(), new BytesRead()};
    }

    /** Rows read from the rings. */
    public static final class RecordsRead extends CustomSumMetric
    {
        @Override
        public String name()
        {
            return RECORDS_READ;
        }

        @Override
        public String description()
        {
            return "records read from the rings";
        }
    }

    /** Arrow body bytes read (in place) from the rings. */
    public static final class BytesRead extends CustomSumMetric
    {
        @Override
        public String name()
        {
            return BYTES_READ;
        }

        @Override
        public String description()
        {
            return "bytes read from the rings";
        }
    }

    /**
     * A task's value of one metric.
     *
     * @param name  the metric's name.
     * @param value the value so far.
     */
    record Value(String name, long value) implements CustomTaskMetric
    {
    }
}
