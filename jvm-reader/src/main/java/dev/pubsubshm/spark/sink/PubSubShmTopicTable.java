package dev.pubsubshm.spark.sink;

import java.util.Set;

import org.apache.spark.sql.connector.catalog.Column;
import org.apache.spark.sql.connector.catalog.SupportsWrite;
import org.apache.spark.sql.connector.catalog.TableCapability;
import org.apache.spark.sql.connector.write.LogicalWriteInfo;
import org.apache.spark.sql.connector.write.Write;
import org.apache.spark.sql.connector.write.WriteBuilder;
import org.apache.spark.sql.types.BinaryType;
import org.apache.spark.sql.types.DataTypes;

/**
 * A Pub/Sub topic as a Spark table: written by {@code df.writeStream.format("pubsub-shm")
 * .option("topicId", ...)} (micro-batch, append) or {@code df.write.format("pubsub-shm")
 * .mode("append")}. It takes rows of {@code data} (binary or string), {@code attributes}
 * (map&lt;string,string&gt;, optional) and {@code ordering_key} (string, optional), checked
 * when the write is planned ({@link TableCapability#ACCEPT_ANY_SCHEMA}: the table checks the
 * columns itself, and names the one that does not fit).
 */
public final class PubSubShmTopicTable implements SupportsWrite
{
    private final SinkOptions options;

    /**
     * @param options the validated sink options.
     */
    public PubSubShmTopicTable(final SinkOptions options)
    {
        this.options = options;
    }

    @Override
    public String name()
    {
        return "pubsub-shm[" + options.topicName() + "]";
    }

    @Override
    public Column[] columns()
    {
        return new Column[] {
            Column.create("data", DataTypes.BinaryType, false),
            Column.create("attributes", DataTypes.createMapType(DataTypes.StringType, DataTypes.StringType, false), true),
            Column.create("ordering_key", DataTypes.StringType, true),
        };
    }

    @Override
    public Set<TableCapability> capabilities()
    {
        return Set.of(TableCapability.BATCH_WRITE, TableCapability.STREAMING_WRITE, TableCapability.ACCEPT_ANY_SCHEMA);
    }

    @Override
    public WriteBuilder newWriteBuilder(final LogicalWriteInfo info)
    {
        final InputColumns columns = InputColumns.resolve(info.schema());
        final boolean dataIsString = !(info.schema().fields()[columns.data()].dataType() instanceof BinaryType);
        final TopicWrite write = new TopicWrite(options, columns, dataIsString, info.queryId());
        return new WriteBuilder()
        {
            @Override
            public Write build()
            {
                return write;
            }
        };
    }

    /** @return the options. */
    public SinkOptions options()
    {
        return options;
    }
}
