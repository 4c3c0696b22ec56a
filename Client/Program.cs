using TauCluster.Client;
using TauCluster.Engine;

try
{
    return args switch
    {
        ["generate", .. var rest] => Commands.Generate(rest),
        ["model", "init", .. var rest] => Commands.ModelInit(rest),
        ["manifold", "inspect", var dir] => Commands.ManifoldInspect(dir),
        [] or ["--help"] or ["-h"] or ["help"] => Commands.Help(),
        _ => throw new UsageException($"unknown command '{string.Join(' ', args.Take(2))}' (try: tau help)"),
    };
}
catch (UsageException e)
{
    Console.Error.WriteLine($"tau: {e.Message}");
    return 2;
}
catch (Exception e) when (e is TauException or IOException or UnauthorizedAccessException)
{
    Console.Error.WriteLine($"tau: {e.Message}");
    return 1;
}
