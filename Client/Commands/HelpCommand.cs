namespace TauCluster.Client;

/// <summary><c>tau help</c>: every command's usage, as README.md's "The tau command line" gives them.</summary>
internal static class HelpCommand
{
    private static readonly string[] Usages =
    [
        GenerateCommand.Usage, ChatCommand.Usage, SessionsCommand.Usage, ModelInitCommand.Usage, ManifoldBuildCommand.Usage,
        ManifoldInspectCommand.Usage, TrainCommand.Usage, BenchDecodeCommand.Usage, BenchKernelsCommand.Usage,
        BenchSessionsCommand.Usage, BenchDeviceCommand.Usage,
    ];

    public static int Run()
    {
        Console.WriteLine($"""
            tau — serve Tauformer models on an Orleans cluster

            {string.Join('\n', Usages.SelectMany(usage => usage.Split('\n')).Select(line => $"  {line}"))}

            Without --cluster, tau starts an embedded one-silo cluster in this process; its sessions are kept
            under $TAU_HOME (default ~/.cache/taucluster). Without --model it runs the built-in default model,
            a byte-level Tauformer trained on the King James Bible; `paper` is the paper's bench shape with
            seeded random weights, which tau bench times by default.
            """);
        return 0;
    }
}
