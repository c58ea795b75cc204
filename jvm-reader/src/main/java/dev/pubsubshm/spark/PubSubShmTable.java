package dev.pubsubshm.spark;

import java.util.Set;

import org.apache.spark.sql.connector.catalog.Column;
import org.apache.spark.sql.connector.catalog.SupportsRead;
import org.apache.spark.sql.connector.catalog.TableCapability;
import org.apache.spark.sql.connector.read.ScanBuilder;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.util.CaseInsensitiveStringMap;

/**
 * The subscription as a Spark table: readable as a micro-batch stream only
 * ({@link TableCapability#MICRO_BATCH_READ}), with the fixed {@link MessageSchema}.
 */
final class PubSubShmTable implements SupportsRead
{
    private final SourceOptions options;

    /**
     * @param options the options validated by the provider.
     */
    PubSubShmTable(final SourceOptions options)
    {
        this.options = options;
    }

    @Override
    public String name()
    {
        return "pubsub-shm[" + options.subscriptionName() + "]";
    }

    @Override
    public Column[] columns()
    {
        final StructField[] fields = MessageSchema.SPARK_SCHEMA.fields();
        final Column[] columns = new Column[fields.length];
        for (int i = 0; i < fields.length; i++)
        {
            columns[i] = Column.create(fields[i].name(), fields[i].dataType(), fields[i].nullable());
        }
        return columns;
    }

    @Override
    public Set<TableCapability> capabilities()
    {
        return Set.of(TableCapability.MICRO_BATCH_READ);
    }

    @Override
    public ScanBuilder newScanBuilder(final CaseInsensitiveStringMap ignored)
    {
        // The options were validated when the source was created; Spark passes the same map.
        return () -> new PubSubShmScan(options);
    }
}
