package dev.pubsubshm.ring;

import org.junit.jupiter.api.Test;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

class ProcessIdentityTest
{
    @Test
    void selfMatchesProcStat() throws Exception
    {
        final ProcessIdentity self = ProcessIdentity.self();
        assertEquals(ProcessHandle.current().pid(), self.pid());
        final String stat = Files.readString(Path.of("/proc/self/stat"));
        final String[] afterComm = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
        assertEquals(Long.parseLong(afterComm[22 - 3]), self.startTicks());
        assertTrue(self.startTicks() > 0);
        assertTrue(ProcessIdentity.isRunning(self.pid(), self.startTicks()));
        assertTrue(ProcessIdentity.isRunning(self.pid(), 0));
        assertFalse(ProcessIdentity.isRunning(self.pid(), self.startTicks() + 1));
        assertSame(self, ProcessIdentity.self());
    }

    @Test
    void parsesCommandNamesWithSpacesAndParentheses()
    {
        final String stat = "4242 (my (odd) cmd) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 20 21\n";
        assertEquals(987654, ProcessIdentity.parseStartTicks(stat, 4242));
        final String spaces = "77 ( a ) b ) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 31337 20";
        assertEquals(31337, ProcessIdentity.parseStartTicks(spaces, 77));
    }

    @Test
    void zombiesAreNotRunning()
    {
        final String stat = "4242 (gone) Z 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 20 21";
        assertEquals(-1, ProcessIdentity.parseStartTicks(stat, 4242));
    }

    @Test
    void malformedStatIsReportedWithThePid()
    {
        final IllegalStateException noParen = assertThrows(IllegalStateException.class,
            () -> ProcessIdentity.parseStartTicks("4242 cmd R 1 2", 4242));
        assertTrue(noParen.getMessage().contains("/proc/4242/stat"), noParen.getMessage());
        final IllegalStateException shortLine = assertThrows(IllegalStateException.class,
            () -> ProcessIdentity.parseStartTicks("4242 (cmd) R 1 2", 4242));
        assertTrue(shortLine.getMessage().contains("fields"), shortLine.getMessage());
        final IllegalStateException notNumber = assertThrows(IllegalStateException.class,
            () -> ProcessIdentity.parseStartTicks("1 (c) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 x1 20", 1));
        assertTrue(notNumber.getMessage().contains("x1"), notNumber.getMessage());
    }

    @Test
    void goneProcessesAreNotRunning() throws Exception
    {
        final Process p = new ProcessBuilder("true").start();
        p.waitFor();
        assertEquals(-1, ProcessIdentity.startTicksOf(p.pid()));
        assertFalse(ProcessIdentity.isRunning(p.pid(), 0));
        assertEquals(-1, ProcessIdentity.startTicksOf(0));
        assertThrows(IllegalArgumentException.class, () -> new ProcessIdentity(0, 1));
    }
}
