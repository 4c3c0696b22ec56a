using TauCluster.Client;
using TauCluster.Engine;

using var interrupt = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;   // stop the generation cleanly; a second Ctrl+C ends the process
    if (interrupt.IsCancellationRequested) Environment.Exit(130);
    interrupt.Cancel();
};

try
{
    return args switch
    {
        ["generate", .. var rest] => await GenerateCommand.Run(rest, interrupt.Token),
        ["chat", .. var rest] => await ChatCommand.Run(rest, interrupt.Token),
        ["sessions", var verb, .. var rest] => await SessionsCommand.Run(verb, rest, interrupt.Token),
        ["model", "init", .. var rest] => ModelInitCommand.Run(rest),
        ["bench", "decode", .. var rest] => BenchDecodeCommand.Run(rest),
        ["bench", "kernels", .. var rest] => BenchKernelsCommand.Run(rest),
        ["bench", "sessions", .. var rest] => await BenchSessionsCommand.Run(rest, interrupt.Token),
        ["bench", "device", .. var rest] => await BenchDeviceCommand.Run(rest, interrupt.Token),
        ["manifold", "build", .. var rest] => await ManifoldBuildCommand.Run(rest, interrupt.Token),
        ["manifold", "inspect", var dir] => ManifoldInspectCommand.Run(dir),
        ["train", .. var rest] => TrainCommand.Run(rest, interrupt.Token),
        [] or ["--help"] or ["-h"] or ["help"] => HelpCommand.Run(),
        _ => throw new UsageException($"unknown command '{string.Join(' ', args.Take(2))}' (try: tau help)"),
    };
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
