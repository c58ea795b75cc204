package dev.pubsubshm.chaos;

import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
import java.nio.file.Path;

import dev.pubsubshm.ring.RingFile;
import dev.pubsubshm.ring.RingFormatException;

/**
 * The Java side of the chaos access tests: tries to open each ring file given with the
 * project's own opener ({@link RingFile#open}) and to connect to each control socket, and
 * prints one line per attempt: {@code open <path>: ok}, {@code open <path>: <kind>: <message>}
 * or {@code connect <path>: <exception>}. The Go test runs it as another uid (nothing may
 * get in) and on rings another uid created (RingFile must refuse them).
 */
public final class AccessProbe
{
    private AccessProbe()
    {
    }

    public static void main(final String[] args)
    {
        for (final String a : args)
        {
            if (a.endsWith(".sock"))
            {
                try (SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX))
                {
                    ch.connect(UnixDomainSocketAddress.of(a));
                    System.out.println("connect " + a + ": ok");
                }
                catch (final Exception ex)
                {
                    System.out.println("connect " + a + ": " + ex);
                }
                continue;
            }
            try (RingFile ring = RingFile.open(Path.of(a)))
            {
                System.out.println("open " + a + ": ok");
            }
            catch (final RingFormatException ex)
            {
                System.out.println("open " + a + ": " + ex.kind() + ": " + ex.getMessage().replace('\n', ' '));
            }
            catch (final Exception ex)
            {
                System.out.println("open " + a + ": " + ex.toString().replace('\n', ' '));
            }
        }
    }
}
