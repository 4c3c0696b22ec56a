using TauCluster.Grains;

namespace TauCluster.Cluster.Tests;

public sealed class ContractTests
{
    [Fact]
    public void A_client_of_the_cluster_needs_only_the_contracts_and_orleans()
    {
        var contract = typeof(ISessionGrain).Assembly;
        var references = contract.GetReferencedAssemblies().Select(a => a.Name!).ToList();
        Assert.Contains("TauCluster.Contracts", references);
        Assert.All(references, name => Assert.True(
            name is "TauCluster.Contracts" || name.StartsWith("Orleans", StringComparison.Ordinal) || name.StartsWith("System", StringComparison.Ordinal)
                || name.StartsWith("Microsoft.Extensions", StringComparison.Ordinal) || name is "netstandard",
            $"{contract.GetName().Name} references {name}"));
        Assert.DoesNotContain(typeof(InvalidOptionsException).Assembly.GetReferencedAssemblies(), a => a.Name!.StartsWith("TauCluster", StringComparison.Ordinal));
    }
}
