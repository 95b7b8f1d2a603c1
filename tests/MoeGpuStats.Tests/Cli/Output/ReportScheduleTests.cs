using Microsoft.Extensions.Time.Testing;
using MoeGpuStats.Cli.Output;

namespace MoeGpuStats.Tests.Cli.Output;

/// <summary>Periodic reports come every interval, spaced further where a report itself is slow, and never at an interval of 0.</summary>
public sealed class ReportScheduleTests
{
    private readonly FakeTimeProvider _clock = new();

    private void Advance(double seconds) => _clock.Advance(TimeSpan.FromSeconds(seconds));

    [Fact]
    public void ACheapReportComesEveryInterval()
    {
        var schedule = new ReportSchedule(5, _clock);
        Advance(4.9);
        Assert.False(schedule.Due);
        Advance(0.1);
        Assert.True(schedule.Due);

        schedule.Report(() => Advance(0.01));
        Advance(4.9);
        Assert.False(schedule.Due);
        Advance(0.1);
        Assert.True(schedule.Due);
    }

    [Fact]
    public void ASlowReportSpacesTheNextToKeepReportsToATenthOfTheRun()
    {
        var schedule = new ReportSchedule(0.001, _clock);
        Advance(0.001);
        Assert.True(schedule.Due);

        // A report of 2 s: the next is due 18 s after it ends, not a millisecond.
        schedule.Report(() => Advance(2));
        Advance(17.9);
        Assert.False(schedule.Due);
        Advance(0.1);
        Assert.True(schedule.Due);

        // Cheap again: back to the interval.
        schedule.Report(() => { });
        Advance(0.001);
        Assert.True(schedule.Due);
    }

    [Fact]
    public void AnIntervalOfZeroIsNeverDue()
    {
        var schedule = new ReportSchedule(0, _clock);
        Advance(86_400);
        Assert.False(schedule.Due);
    }
}
