using MoeGpuStats.Device;

namespace MoeGpuStats.Tests;

/// <summary>
/// Holds a reader's next copy back until <see cref="Release"/> (or <see cref="Patience.Hold"/>): where a GPU's read
/// waits for the queued work, on ILGPU's CPU accelerator, whose copies do not wait.
/// </summary>
internal sealed class HeldCopy : IDisposable
{
    private readonly DeviceStateReader _reader;
    private readonly ManualResetEventSlim _held = new();
    private readonly ManualResetEventSlim _released = new();
    private int _armed = 1;

    public HeldCopy(DeviceStateReader reader)
    {
        _reader = reader;
        reader.BeforeCopy = () =>
        {
            if (Interlocked.Exchange(ref _armed, 0) == 1)
            {
                _held.Set();
                _released.Wait(Patience.Hold);
            }
        };
    }

    public static CancellationToken Cancellation => TestContext.Current.CancellationToken;

    /// <summary>Whether <paramref name="task"/> ends within <paramref name="time"/>.</summary>
    public static async Task<bool> Within(Task task, TimeSpan time) => await Task.WhenAny(task, Task.Delay(time, Cancellation)) == task;

    public void WaitUntilHeld() => Assert.True(_held.Wait(Patience.GoAhead), "the read never reached its copy back");

    public void Release() => _released.Set();

    public void Dispose()
    {
        _released.Set();
        _reader.BeforeCopy = null;
        _held.Dispose();
        _released.Dispose();
    }
}
