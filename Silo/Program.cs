using Microsoft.Extensions.Options;
using TauCluster.Silo;

try
{
    TauSilo.Build(args).Run();
    return 0;
}
catch (OptionsValidationException e)
{
    // A configuration mistake is the operator's to fix: one line that names every bad key, not a stack trace.
    Console.Error.WriteLine($"TauCluster.Silo: invalid configuration: {string.Join("; ", e.Failures)}");
    return 1;
}
catch (TauCluster.Contracts.InvalidOptionsException e)
{
    Console.Error.WriteLine($"TauCluster.Silo: invalid configuration: {e.Message}");
    return 1;
}
