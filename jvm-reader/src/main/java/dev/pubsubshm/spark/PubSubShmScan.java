package dev.pubsubshm.spark;

import java.nio.file.Path;

import org.apache.spark.SparkContext;
import org.apache.spark.SparkEnv;
import org.apache.spark.sql.connector.metric.CustomMetric;
import org.apache.spark.sql.connector.read.Scan;
import org.apache.spark.sql.connector.read.streaming.MicroBatchStream;
import org.apache.spark.sql.types.StructType;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The scan of a subscription: the fixed schema, columnar reads, the custom task metrics, and
 * the micro-batch stream (created on the driver when the query starts).
 */
final class PubSubShmScan implements Scan
{
    private static final Logger LOG = LoggerFactory.getLogger(PubSubShmScan.class);

    private final SourceOptions options;

    /**
     * @param options validated options.
     */
    PubSubShmScan(final SourceOptions options)
    {
        this.options = options;
    }

    @Override
    public StructType readSchema()
    {
        return MessageSchema.SPARK_SCHEMA;
    }

    @Override
    public String description()
    {
        return "PubSubShmScan[" + options + "]";
    }

    @Override
    public ColumnarSupportMode columnarSupportMode()
    {
        return ColumnarSupportMode.SUPPORTED;
    }

    @Override
    public CustomMetric[] supportedCustomMetrics()
    {
        return SourceMetrics.supported();
    }

    @Override
    public MicroBatchStream toMicroBatchStream(final String checkpointLocation)
    {
        final SparkContext sc = SparkContext.getOrCreate();
        final boolean local = sc.isLocal();
        final boolean plugin = PubSubShmSourceProvider.pluginConfigured(sc);
        final Path setDir;
        if (local || !plugin)
        {
            // The rings must be on this host: fail now, naming the directory and pullerd.
            setDir = RingSetLocator.locate(options);
        }
        else
        {
            setDir = options.ringSetDir();
            if (!RingSetScanner.isRingSet(setDir))
            {
                LOG.info("pubsub-shm: no ring set {} on the driver host; the executors' plugin reports the rings of " +
                    "their hosts", setDir);
            }
        }
        if (!local && !plugin)
        {
            LOG.warn("pubsub-shm: master {} is not local and spark.plugins does not list {}: only the rings on the " +
                "driver's host are read and committed. Add --conf spark.plugins={} to read every executor host's rings",
                sc.master(), PubSubShmPlugin.class.getName(), PubSubShmPlugin.class.getName());
        }
        final String host = SparkEnv.get().blockManager().blockManagerId().host();
        final boolean driverCommits = sc.getConf().getBoolean(PubSubShmMicroBatchStream.DRIVER_COMMITS_CONF, true);
        return new PubSubShmMicroBatchStream(options, setDir, host, checkpointLocation, sc.hadoopConfiguration(),
            driverCommits, local || !plugin);
    }
}
