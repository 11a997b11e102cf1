// The evaluation classifier (models/classifier.h): `unidiff eval train-classifier` trains it on a
// labelled image dataset and writes it to one HDF5 file; `unidiff eval --classifier=FILE` uses its
// penultimate features for the Frechet distance (FD) between generated and real images, its
// predictions for the generated class histogram and, when the samples carry the labels they were
// generated for, for the fraction classified as their class.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <torch/types.h>

#include "models/classifier.h"

namespace unidiff::experiments {

struct ClassifierTrainConfig {
  std::string data;        ///< labelled training images (HDF5 /data uint8 [N, C, H, W], /labels)
  std::string test;        ///< labelled test images: accuracy after every epoch
  std::string out;         ///< the classifier file to write
  int64_t epochs = 5;      ///< passes over the training set
  int64_t batch = 128;     ///< images per step
  double lr = 1e-3;        ///< Adam learning rate (cosine-decayed to 0 over the run)
  uint32_t seed = 0;       ///< initialisation and data order
  int threads = 0;         ///< intra-op threads (0 = the cores this process may use)
};

/// Trains, writes `out` atomically, returns the final test accuracy.
double train_classifier(const ClassifierTrainConfig& config);

struct LoadedClassifier {
  models::Classifier net{nullptr};
  double test_accuracy = 0;  ///< recorded when it was trained
  std::string trained_on;    ///< the training data it was made from
};
/// Loads a classifier file; a missing or foreign file throws InputError.
LoadedClassifier load_classifier(const std::filesystem::path& path);

/// Images -> (features [N, F], predicted classes [N]) in batches, float64 features on the CPU.
/// Generated images are first quantised as a PNG would store them: clamped to [-1, 1] and
/// rounded to the 256 levels of the real data.
std::pair<torch::Tensor, torch::Tensor> classify(models::Classifier& net, const torch::Tensor& images);

}  // namespace unidiff::experiments
