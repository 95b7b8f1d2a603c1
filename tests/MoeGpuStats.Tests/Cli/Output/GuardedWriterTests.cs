using MoeGpuStats.Cli.Output;

namespace MoeGpuStats.Tests.Cli.Output;

/// <summary><see cref="GuardedWriter"/> over writers that fail: the first failure is kept, and nothing is written after it.</summary>
public sealed class GuardedWriterTests
{
    /// <summary>
    /// After a failed write nothing more reaches the inner writer, though it would take it again (a pipe's reader that came
    /// back, a disk with room again): the output stops where it broke, not with a hole in its middle; the first failure is kept.
    /// </summary>
    [Fact]
    public void NothingIsWrittenAfterTheFirstFailure()
    {
        var inner = new FailingOnce();
        var guarded = new GuardedWriter(inner);

        guarded.Write("first ");
        guarded.Write("lost");
        guarded.Write("after");
        guarded.WriteLine("a line");
        guarded.Write('c');
        guarded.Flush();

        Assert.Equal("first ", inner.ToString());
        Assert.Same(inner.Thrown, guarded.Failure);
    }

    /// <summary>A closed descriptor, which .NET reports as "Access to the path is denied", is kept as the system's error inside it.</summary>
    [Fact]
    public void AClosedDescriptorIsKeptAsTheSystemsError()
    {
        var system = new IOException("Bad file descriptor");
        var guarded = new GuardedWriter(new Throwing(new UnauthorizedAccessException("Access to the path is denied.", system)));

        guarded.WriteLine("text");

        Assert.Same(system, guarded.Failure);
    }

    /// <summary>A writer whose second write fails, as a full disk does, and whose later writes succeed.</summary>
    private sealed class FailingOnce : StringWriter
    {
        private int _writes;

        public IOException Thrown { get; } = new("No space left on device");

        public override void Write(char value)
        {
            Fail();
            base.Write(value);
        }

        public override void Write(string? value)
        {
            Fail();
            base.Write(value);
        }

        public override void Write(char[] buffer, int index, int count)
        {
            Fail();
            base.Write(buffer, index, count);
        }

        private void Fail()
        {
            if (++_writes == 2)
            {
                throw Thrown;
            }
        }
    }

    private sealed class Throwing(Exception exception) : StringWriter
    {
        public override void Write(char value) => throw exception;

        public override void Write(string? value) => throw exception;

        public override void Write(char[] buffer, int index, int count) => throw exception;
    }
}
