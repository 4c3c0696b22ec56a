using System.CommandLine;
using System.CommandLine.Invocation;
using TauCluster.Client;
using TauCluster.Engine;

// tau's own Ctrl+C handling, not the library's (its ProcessTerminationTimeout is off below): a first Ctrl+C cancels the
// command's token, which every long command honours, and ends in exit code 130; a second ends the process at once.
using var interrupt = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    if (interrupt.IsCancellationRequested) Environment.Exit(130);
    interrupt.Cancel();
};

try
{
    var parsed = TauCommandLine.Root().Parse(args);
    if (parsed.Action is ParseErrorAction) return TauCommandLine.ReportParseError(parsed);
    return await parsed.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = null }, interrupt.Token);
}
catch (UsageException e)
{
    Console.Error.WriteLine($"tau: {e.Message}");
    return 2;
}
catch (OperationCanceledException) when (interrupt.IsCancellationRequested)
{
    Console.Error.WriteLine("tau: interrupted");
    return 130;
}
catch (Exception e) when (e is TauException or IOException or UnauthorizedAccessException)
{
    Console.Error.WriteLine($"tau: {e.Message}");
    return 1;
}
catch (Microsoft.Extensions.Options.OptionsValidationException e)
{
    Console.Error.WriteLine($"tau: {string.Join("; ", e.Failures)}");   // the embedded silo's options, as the flags made them
    return 1;
}
catch (Exception e)
{
    Console.Error.WriteLine($"tau: {e.GetType().Name}: {WithoutStackTraces(e.Message)}");
    return 3;
}

// One line, without the stack traces that some messages carry (Orleans prints its inner exceptions into its own).
static string WithoutStackTraces(string message) => string.Join(' ', message.ReplaceLineEndings("\n").Split('\n')
    .Select(line => line.Trim())
    .Where(line => line.Length > 0 && !line.StartsWith("at ", StringComparison.Ordinal) && !line.StartsWith("--- End of", StringComparison.Ordinal)));
