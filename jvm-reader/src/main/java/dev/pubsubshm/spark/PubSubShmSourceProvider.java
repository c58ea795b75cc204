package dev.pubsubshm.spark;

import java.util.Map;

import org.apache.spark.SparkContext;
import org.apache.spark.sql.connector.catalog.Table;
import org.apache.spark.sql.connector.catalog.TableProvider;
import org.apache.spark.sql.connector.expressions.Transform;
import org.apache.spark.sql.sources.DataSourceRegister;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.sql.util.CaseInsensitiveStringMap;

import dev.pubsubshm.spark.sink.PubSubShmTopicTable;
import dev.pubsubshm.spark.sink.SinkOptions;

/**
 * {@code spark.readStream.format("pubsub-shm")}: a Pub/Sub subscription read through the
 * shared-memory rings that pullerd fills on each executor host (docs/SPARK.md).
 *
 * <pre>
 * spark.readStream.format("pubsub-shm")
 *   .option("projectId", "my-project").option("subscriptionId", "my-sub")
 *   .load()
 * </pre>
 *
 * <p>With a {@code topicId} option it is the sink instead: {@code df.writeStream.format("pubsub-shm")
 * .option("projectId", ...).option("topicId", ...)} ({@link PubSubShmTopicTable}).
 *
 * <p>The options are validated here, when the source is created ({@code load()}), and, in
 * local mode or without the plugin, so is the presence of the ring set on this host (or a
 * pullerd that can create it): every error names what to fix.
 */
public final class PubSubShmSourceProvider implements TableProvider, DataSourceRegister
{
    /** The format name. */
    public static final String SHORT_NAME = "pubsub-shm";

    @Override
    public String shortName()
    {
        return SHORT_NAME;
    }

    @Override
    public StructType inferSchema(final CaseInsensitiveStringMap options)
    {
        return MessageSchema.SPARK_SCHEMA;
    }

    @Override
    public Table getTable(final StructType schema, final Transform[] partitioning, final Map<String, String> properties)
    {
        if (SinkOptions.isSink(properties))
        {
            // df.write(Stream).format("pubsub-shm").option("topicId", ...): the sink (docs/SPARK.md)
            return new PubSubShmTopicTable(SinkOptions.parse(properties, System.getenv()));
        }
        if (schema != null && !schema.equals(MessageSchema.SPARK_SCHEMA))
        {
            throw new IllegalArgumentException("pubsub-shm has a fixed schema " + MessageSchema.SPARK_SCHEMA.simpleString() +
                "; do not call .schema(...) on the reader (given: " + schema.simpleString() + ")");
        }
        final SparkContext sc = SparkContext.getOrCreate();
        final SourceOptions options = SourceOptions.parse(properties, Math.max(1, sc.defaultParallelism()), System.getenv());
        if (sc.isLocal() || !pluginConfigured(sc))
        {
            RingSetLocator.locate(options);
        }
        return new PubSubShmTable(options);
    }

    @Override
    public boolean supportsExternalMetadata()
    {
        return true; // so that .schema(...) reaches getTable and gets a clear error
    }

    /**
     * Whether {@code spark.plugins} lists {@link PubSubShmPlugin}.
     *
     * @param sc the context.
     * @return {@code true} if the plugin is configured.
     */
    static boolean pluginConfigured(final SparkContext sc)
    {
        final String plugins = sc.getConf().get("spark.plugins", "");
        for (final String p : plugins.split(","))
        {
            if (p.trim().equals(PubSubShmPlugin.class.getName()))
            {
                return true;
            }
        }
        return false;
    }
}
