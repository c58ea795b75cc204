package dev.pubsubshm.spark;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * A client of pullerd's control channel (FORMAT.md section 1.1): a unix stream socket
 * speaking line-delimited JSON, one request and one answer per line. The source uses it to
 * attach a subscription when its ring set does not exist yet.
 */
final class PullerdClient
{
    private static final ObjectMapper JSON = new ObjectMapper();

    private PullerdClient()
    {
    }

    /**
     * Sends {@code {"op":"attach","project":p,"subscription":s[,"partitions":n][,"streams":k]}} and returns
     * the answer.
     *
     * @param socket       the control socket ({@code <ringRoot>/control.sock}).
     * @param project      the project ID.
     * @param subscription the subscription ID.
     * @param partitions   virtual partitions to ask for, 0 for pullerd's default.
     * @param streams      StreamingPull streams pullerd may open for it (it resizes a set it
     *                     serves), 0 for pullerd's own number.
     * @param timeoutMs    how long to wait for the connection and the answer.
     * @return the answer object ({@code ok}, {@code error}, {@code ring_set}).
     * @throws IOException if nobody answers on the socket in time.
     */
    static JsonNode attach(final Path socket, final String project, final String subscription, final int partitions,
        final int streams, final long timeoutMs) throws IOException
    {
        final ObjectNode req = JSON.createObjectNode();
        req.put("op", "attach");
        req.put("project", project);
        req.put("subscription", subscription);
        if (partitions > 0)
        {
            req.put("partitions", partitions);
        }
        if (streams > 0)
        {
            req.put("streams", streams);
        }
        return call(socket, JSON.writeValueAsString(req), timeoutMs);
    }

    /**
     * Sends one request line and reads one answer line.
     *
     * @param socket    the control socket.
     * @param request   one JSON object, without the newline.
     * @param timeoutMs the deadline for the whole exchange.
     * @return the parsed answer.
     * @throws IOException if the socket refuses the connection, closes early, answers
     *                     something that is not JSON, or does not answer in time.
     */
    static JsonNode call(final Path socket, final String request, final long timeoutMs) throws IOException
    {
        final long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
        try (SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
             Selector selector = Selector.open())
        {
            ch.connect(UnixDomainSocketAddress.of(socket)); // local: connects or fails at once
            ch.configureBlocking(false);
            final ByteBuffer out = ByteBuffer.wrap((request + "\n").getBytes(StandardCharsets.UTF_8));
            while (out.hasRemaining())
            {
                ch.write(out);
                if (out.hasRemaining())
                {
                    waitFor(selector, ch, SelectionKey.OP_WRITE, deadline, socket);
                }
            }
            final ByteArrayOutputStream line = new ByteArrayOutputStream();
            final ByteBuffer in = ByteBuffer.allocate(8192);
            while (true)
            {
                in.clear();
                final int n = ch.read(in);
                if (n < 0)
                {
                    throw new IOException("pullerd closed the control socket \"" + socket + "\" without answering");
                }
                if (n == 0)
                {
                    waitFor(selector, ch, SelectionKey.OP_READ, deadline, socket);
                    continue;
                }
                for (int i = 0; i < n; i++)
                {
                    final byte b = in.get(i);
                    if (b == '\n')
                    {
                        final String answer = line.toString(StandardCharsets.UTF_8);
                        try
                        {
                            return JSON.readTree(answer);
                        }
                        catch (final IOException ex)
                        {
                            throw new IOException("pullerd answered something that is not JSON on \"" + socket + "\": " +
                                answer, ex);
                        }
                    }
                    line.write(b);
                }
                if (line.size() > 1 << 20)
                {
                    throw new IOException("pullerd's answer on \"" + socket + "\" exceeds 1 MiB without a newline");
                }
            }
        }
    }

    private static void waitFor(final Selector selector, final SocketChannel ch, final int op, final long deadline,
        final Path socket) throws IOException
    {
        final long left = TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime());
        if (left <= 0)
        {
            throw new IOException("pullerd did not answer on \"" + socket + "\" in time");
        }
        final SelectionKey key = ch.register(selector, op);
        selector.select(left);
        key.cancel();
        selector.selectNow();
    }
}
