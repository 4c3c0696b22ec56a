using System.Numerics;
using System.Numerics.Tensors;

namespace TauCluster.Engine;

/// <summary>Resolved taumode parameters: τ mode, the fixed τ, eps, attention temperature and percentile p.</summary>
public readonly record struct TaumodeSettings(TaumodeKind Mode, double Tau, double Eps, double Temperature, double Percentile)
{
    /// <summary>The divisor of λ distances: max(temperature, eps).</summary>
    public double EffectiveTemperature => Math.Max(Temperature, Eps);
}

/// <summary>
/// A domain to score against: its Laplacian and the settings resolved against it (<see cref="TaumodeConfig.Resolve"/>).
/// The settings stay a value of their own because τ selection needs no Laplacian and the checks pair them with
/// reference matrices.
/// </summary>
public sealed record TaumodeSpec(Laplacian Laplacian, TaumodeSettings Settings)
{
    /// <summary>The divisor of λ distances, max(temperature, eps), as the kernels use it.</summary>
    public float Temperature => (float)Settings.EffectiveTemperature;

    /// <summary>The model's own λ weights (a learned temperature, a projection), set by <see cref="TauModel.DomainFor"/>; null: none.</summary>
    public LambdaHeads? Heads { get; init; }

    /// <summary>λq of a query head vector of layer <paramref name="layer"/>, whose kv head is <paramref name="kvHead"/>.</summary>
    public float QueryLambda(int layer, int kvHead, ReadOnlySpan<float> query) =>
        Heads is null ? Taumode.Lambda(query, Laplacian, Settings) : Heads.Query(layer, kvHead, query, this);

    /// <summary>λk of a key head vector.</summary>
    public float KeyLambda(int layer, int kvHead, ReadOnlySpan<float> key) =>
        Heads is null ? Taumode.Lambda(key, Laplacian, Settings) : Heads.Key(layer, kvHead, key, this);

    /// <summary>Refuses a spec that lacks the λ weights its model's config asks for: its λ would silently be the seed's.</summary>
    public TaumodeSpec RequireFor(ModelConfig config)
    {
        Laplacian.RequireDimension(config.LambdaDim, "this model");
        if (config.HasLambdaWeights && Heads is null)
            throw new InvalidOperationException("this model's λ has weights of its own: take its domain from TauModel.DomainFor");
        return this;
    }
}

/// <summary>
/// The taumode λ of a head vector x against a Laplacian L (DESIGN.md §1):
/// E = max(xᵀLx, 0) / (xᵀx + eps); τ by mode, floored at 1e-10 then at eps; λ = E / (E + τ).
/// Everything is computed in double and rounded once at the end. Generic over the vector's number type so that the
/// Trainer's double-precision gradient checks run this same code; a float vector gets the same bits either way.
/// </summary>
public static class Taumode
{
    public const double TauFloor = 1e-10;

    // A double per component on the stack: head vectors are small, and decoding must not allocate.
    private const int StackSortLimit = 1024;

    public static float Lambda(ReadOnlySpan<float> x, Laplacian laplacian, in TaumodeSettings settings)
    {
        double energy = RayleighEnergy(x, laplacian, settings.Eps);
        double tau = FlooredTau(x, settings);
        return (float)(energy / (energy + tau));
    }

    /// <summary>E(x) = max(xᵀLx, 0) / (xᵀx + eps).</summary>
    public static double RayleighEnergy<T>(ReadOnlySpan<T> x, Laplacian laplacian, double eps) where T : IFloatingPointIeee754<T> =>
        Math.Max(laplacian.QuadraticForm(x), 0.0) / (SquaredNorm(x) + eps);

    /// <summary>xᵀx in double.</summary>
    public static double SquaredNorm<T>(ReadOnlySpan<T> x) where T : IFloatingPointIeee754<T>
    {
        double norm2 = 0;
        foreach (T v in x) norm2 += double.CreateTruncating(v) * double.CreateTruncating(v);
        return norm2;
    }

    /// <summary>τ = max(max(τ_mode(x), 1e-10), eps).</summary>
    public static double FlooredTau<T>(ReadOnlySpan<T> x, in TaumodeSettings settings) where T : IFloatingPointIeee754<T> =>
        Math.Max(Math.Max(SelectTau(x, settings), TauFloor), settings.Eps);

    /// <summary>τ before flooring: the fixed value, or the median, mean or percentile of x's finite components.</summary>
    public static double SelectTau<T>(ReadOnlySpan<T> x, in TaumodeSettings settings) where T : IFloatingPointIeee754<T>
    {
        if (settings.Mode == TaumodeKind.Fixed) return settings.Tau;
        if (settings.Mode == TaumodeKind.Mean)
        {
            double sum = 0; int count = 0;
            foreach (T v in x) if (T.IsFinite(v)) { sum += double.CreateTruncating(v); count++; }
            return count == 0 ? TauFloor : sum / count;
        }

        // Median and percentile need order statistics of the finite components; widening to double first keeps a
        // float vector's order and values, so its τ is the one a float sort gives. Selection finds them without sorting.
        Span<double> values = x.Length <= StackSortLimit ? stackalloc double[x.Length] : new double[x.Length];
        int n = 0;
        foreach (T v in x) if (T.IsFinite(v)) values[n++] = double.CreateTruncating(v);
        if (n == 0) return TauFloor;
        values = values[..n];
        if (settings.Mode == TaumodeKind.Median)
        {
            double upper = Select(values, n / 2);
            return n % 2 == 1 ? upper : 0.5 * (TensorPrimitives.Max<double>(values[..(n / 2)]) + upper);
        }
        int index = (int)Math.Floor((n - 1) * settings.Percentile + 0.5);
        return Select(values, Math.Clamp(index, 0, n - 1));
    }

    /// <summary>
    /// The k-th smallest (0-based) of <paramref name="values"/>, by Hoare's selection: it reorders them so that none
    /// before k is larger and none after it smaller.
    /// </summary>
    private static double Select(Span<double> values, int k)
    {
        int lo = 0, hi = values.Length - 1;
        while (lo < hi)
        {
            double pivot = values[(lo + hi) >>> 1];
            int i = lo, j = hi;
            while (i <= j)
            {
                while (values[i] < pivot) i++;
                while (values[j] > pivot) j--;
                if (i <= j)
                {
                    (values[i], values[j]) = (values[j], values[i]);
                    i++;
                    j--;
                }
            }
            if (k <= j) hi = j;
            else if (k >= i) lo = i;
            else break;
        }
        return values[k];
    }
}
