using System.Numerics.Tensors;

namespace TauCluster.Training;

/// <summary>
/// AdamW (Loshchilov and Hutter): Adam moments with bias correction and weight decay decoupled from the gradient,
/// p ← p − lr·(m̂ / (√v̂ + eps) + wd·p). The token embedding is not decayed, nor are vectors (the λ log-gains), as
/// biases and norms commonly are not. Element-wise, so splitting it across cores
/// changes no result.
/// </summary>
public sealed class AdamW
{
    private const int ChunkLength = 1 << 14;

    private readonly (int Offset, int Length, bool Decay)[] chunks;
    private readonly double[] partialSums;

    public AdamW(ParameterLayout layout, double beta1, double beta2, double epsilon, double weightDecay)
    {
        (Beta1, Beta2, Epsilon, WeightDecay) = (beta1, beta2, epsilon, weightDecay);
        FirstMoment = new float[layout.Count];
        SecondMoment = new float[layout.Count];
        chunks = layout.Tensors
            .SelectMany(t => Enumerable.Range(0, (t.Length + ChunkLength - 1) / ChunkLength)
                .Select(c => (t.Offset + c * ChunkLength, Math.Min(ChunkLength, t.Length - c * ChunkLength), t != layout.Embedding && t.Shape.Length > 1)))
            .ToArray();
        partialSums = new double[chunks.Length];
    }

    public double Beta1 { get; }
    public double Beta2 { get; }
    public double Epsilon { get; }
    public double WeightDecay { get; }

    /// <summary>m, the running mean of the gradients.</summary>
    public float[] FirstMoment { get; }

    /// <summary>v, the running mean of the squared gradients.</summary>
    public float[] SecondMoment { get; }

    /// <summary>Updates taken so far (t of the bias correction).</summary>
    public int Updates { get; set; }

    public void Update(float[] parameters, float[] gradients, double learningRate, ParallelOptions parallel)
    {
        Updates++;
        float b1 = (float)Beta1, b2 = (float)Beta2, eps = (float)Epsilon, lr = (float)learningRate;
        float correction1 = (float)(1 - Math.Pow(Beta1, Updates)), correction2 = (float)(1 - Math.Pow(Beta2, Updates));
        float[] m = FirstMoment, v = SecondMoment;
        Parallel.For(0, chunks.Length, parallel, c =>
        {
            var (offset, length, decay) = chunks[c];
            float keep = decay ? (float)(1 - learningRate * WeightDecay) : 1f;
            for (int i = offset; i < offset + length; i++)
            {
                float g = gradients[i];
                m[i] = b1 * m[i] + (1 - b1) * g;
                v[i] = b2 * v[i] + (1 - b2) * g * g;
                float mHat = m[i] / correction1, vHat = v[i] / correction2;
                parameters[i] = parameters[i] * keep - lr * mHat / (MathF.Sqrt(vHat) + eps);
            }
        });
    }

    /// <summary>‖g‖₂ over all parameters, summed in a fixed order (chunk by chunk, in double).</summary>
    public double GradientNorm(float[] gradients, ParallelOptions parallel)
    {
        var partial = partialSums;
        Parallel.For(0, chunks.Length, parallel, c => partial[c] = TensorPrimitives.SumOfSquares(gradients.AsSpan(chunks[c].Offset, chunks[c].Length)));
        double total = 0;
        foreach (double p in partial) total += p;
        return Math.Sqrt(total);
    }
}

/// <summary>Linear warm-up to the peak rate, then a cosine decay to <c>minFraction</c> of it at the last step.</summary>
public static class LearningRateSchedule
{
    /// <summary>The rate of update <paramref name="step"/> (0-based) of <paramref name="totalSteps"/>.</summary>
    public static double At(int step, int totalSteps, int warmupSteps, double peak, double minFraction)
    {
        if (step < warmupSteps) return peak * (step + 1) / warmupSteps;
        double progress = Math.Min(1.0, (step - warmupSteps) / (double)Math.Max(1, totalSteps - 1 - warmupSteps));
        double floor = peak * minFraction;
        return floor + (peak - floor) * 0.5 * (1 + Math.Cos(Math.PI * progress));
    }
}
